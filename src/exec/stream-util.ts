/**
 * Resolves on 'drain', or when the stream closes or fails (nothing more will drain then), or
 * when `signal` aborts. Takes any Node writable (a socket, a pipe, process.stdout).
 */
export function drained (stream: NodeJS.WritableStream, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done)
      stream.off('close', done)
      stream.off('error', done)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('close', done)
    stream.on('error', done)
    signal?.addEventListener('abort', done)
  })
}
