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
