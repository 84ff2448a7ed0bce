/** A promise raced against a deadline: past `ms` it rejects with ERR_TIMEOUT and `message`. */
import { VgridError } from './errors.js'

export async function withTimeout<T> (p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new VgridError('ERR_TIMEOUT', message)) }, ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(done, ms)
    function done (): void { clearTimeout(t); signal.removeEventListener('abort', done); resolve() }
    signal.addEventListener('abort', done)
  })
}
