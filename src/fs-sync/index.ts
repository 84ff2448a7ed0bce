/**
 * fs-sync: a workspace travels as content-addressed chunks. The submitter scans it into a
 * Merkle tree (FastCDC 2020 chunks named by SHA-256, a stat cache so unchanged files are not
 * read again) and exports it; the executor pulls what its chunk store and its persistent copy
 * lack over `/vgrid/sync/1.0.0` and rewrites only the files that changed; when the command
 * ends the submitter pulls the executor's changes back and applies them, keeping any local
 * edit made meanwhile and writing the incoming version beside it. No path from a peer reaches
 * the disk without the checks of paths.ts.
 */
export * from './types.js'
export { DEFAULT_CDC, chunkFile, chunkFileSync, chunkBuffer, type CdcParams } from './fastcdc.js'
export { ChunkStore, DEFAULT_STORE_CAP_BYTES, type StoreStats } from './store.js'
export { scanWorkspace, floorMs, type Scan, type ScanOptions } from './scan.js'
export { StatCache, statCachePath } from './stat-cache.js'
export { encodeTree, EncodeMemo, decodeTree, hexOf, hashOf, hashEquals } from './tree-codec.js'
export { diffTrees, treeEquals } from './diff.js'
export { IgnoreRules, loadIgnoreRules, DEFAULT_IGNORES, IGNORE_FILE } from './ignore-rules.js'
export { checkName, checkRelPath, safeResolve, isEscapingLink } from './paths.js'
export { materialize, type MaterializeResult } from './materialize.js'
export { applyOutputs, type ApplyOutputsResult } from './apply-outputs.js'
export { SYNC_PROTOCOL, SYNC_MAX_FRAME_BYTES } from '../protocol/sync.js'
export { ExportRegistry } from './provider.js'
export { BlobFetcher, type Lane } from './fetcher.js'
export { readChunkAt } from './read-chunk.js'
export { checkCopy, markChanged, type CopyCheck, type CopyCheckOptions } from './copy-check.js'
export { StatWorker } from './stat-workers.js'
export { WatchHub } from './scan-watch.js'
export { FileWriter } from './file-writer.js'
export { CopyChunks, MAX_COPY_CHUNKS } from './copy-chunks.js'
export { syncCopy, prepareCopy, saveBase, forgetBase, type SyncCopyResult, type SyncProgress, type PreparedCopy } from './sync-copy.js'
export { findWorkspace, type WorkspaceRef } from './workspace.js'
export { removeTree } from './remove-tree.js'
export { nodeAt, treeStats } from './tree-stats.js'
export { PlaneServer, type PlaneGrant } from './plane/server.js'
export { PlanePullers, planeConnections } from './plane/pullers.js'
export { dialPlane } from './plane/client.js'
export { WorkerPool, defaultScanWorkers } from './scan-workers.js'
