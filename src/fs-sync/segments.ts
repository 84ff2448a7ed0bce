/**
 * One big file cut by several threads at once, with the very chunks one thread would cut.
 *
 * FastCDC's cuts depend only on the bytes since the last cut: two cutters that start at
 * different places produce the same cuts from the first one they share on. So segment k is
 * cut from its own start as if a chunk began there, and read on past the next segment's
 * start by an overlap; joining keeps segment k's chunks up to its first cut that segment k+1
 * also made, and k+1's from there. A cut at the end of a segment's read, where it stopped and
 * not the content, is never taken as shared. When two segments share no cut within the
 * overlap (which needs more than ~30 chunks in a row without a content cut), `joinSegments`
 * gives undefined and the caller cuts the file in one piece.
 */
import type { ChunkRef } from './types.js'

/** A file this big or more is cut in segments of at least this much each. */
export const SEGMENT_MIN_BYTES = 32 * 1024 * 1024
/** How far past its end a segment's cut goes on, to meet the next one's cuts (8 max-size chunks). */
export const SEGMENT_OVERLAP_BYTES = 2 * 1024 * 1024

export interface Segment {
  /** Where its cut started. */
  from: number
  /** Where its read stopped (its last chunk ends there), unless it reached the end of the file. */
  limit: number
  refs: ChunkRef[]
  eof: boolean
}

/** The segments' starts for a file of `size` bytes over at most `threads` threads: [0] when it is not worth splitting. */
export function segmentStarts (size: number, threads: number): number[] {
  const n = Math.max(1, Math.min(threads, Math.floor(size / SEGMENT_MIN_BYTES)))
  return Array.from({ length: n }, (_, i) => Math.floor(size * i / n))
}

/** Cut ends of a segment that the content made (not the end of its read). */
function contentCuts (seg: Segment): number[] {
  const ends: number[] = []
  let at = seg.from
  for (const r of seg.refs) {
    at += r.size
    ends.push(at)
  }
  if (!seg.eof && ends.length > 0 && ends[ends.length - 1] === seg.limit) ends.pop()
  return ends
}

/** The file's chunks from its segments in order, or undefined when two of them never meet. */
export function joinSegments (segs: Segment[]): ChunkRef[] | undefined {
  let out = segs[0]!.refs.slice()
  let outCuts = contentCuts(segs[0]!)
  let outEof = segs[0]!.eof
  for (let k = 1; k < segs.length; k++) {
    const next = segs[k]!
    // a file that ended before this segment's start: nothing more to join
    if (outEof) break
    const nextCuts = contentCuts(next)
    const theirs = new Set(nextCuts)
    theirs.add(next.from)
    const meet = outCuts.find((c) => c >= next.from && theirs.has(c))
    if (meet === undefined) return undefined
    // ours up to the meeting cut, theirs after it
    const keep = outCuts.indexOf(meet) + 1
    out = out.slice(0, keep)
    const skip = meet === next.from ? 0 : nextCuts.indexOf(meet) + 1
    out.push(...next.refs.slice(skip))
    outCuts = [...outCuts.slice(0, keep), ...nextCuts.slice(skip)]
    outEof = next.eof
  }
  return out
}
