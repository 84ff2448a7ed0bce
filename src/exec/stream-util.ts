import type { Writable } from 'node:stream'

/** Resolves on 'drain', or when the stream closes or fails (nothing more will drain then). */
export function drained (stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done)
      stream.off('close', done)
      stream.off('error', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('close', done)
    stream.on('error', done)
  })
}
