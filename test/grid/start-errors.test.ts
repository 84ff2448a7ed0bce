/** What makes createGrid fail, and how: bad addresses, a taken port, a broken describe(). */
import { createServer, type Server } from 'node:net'
import { afterEach, expect, it } from 'vitest'
import { createGrid, loadOrCreateIdentity } from '../../src/grid/index.js'
import { fakeDescription, Harness } from './harness.js'

const h = new Harness()
let server: Server | undefined
afterEach(async () => {
  await h.cleanup()
  if (server !== undefined) await new Promise((resolve) => server!.close(resolve))
  server = undefined
})

async function start (listen: string[], bootstrap: string[] = [], describe = (): ReturnType<typeof fakeDescription> => fakeDescription('x')): Promise<void> {
  const grid = await createGrid({
    privateKey: await loadOrCreateIdentity(await h.home()),
    swarmKey: h.swarmKey,
    listen,
    bootstrap,
    version: '0.0.0-test',
    startedAt: Date.now(),
    describe
  })
  await grid.stop()
}

it('a fixed port already in use is ERR_PORT_IN_USE with a hint', async () => {
  server = createServer()
  await new Promise<void>((resolve) => { server!.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as { port: number }).port
  const err: any = await start([`/ip4/127.0.0.1/tcp/${port}`]).catch((e) => e)
  expect(err).toMatchObject({ code: 'ERR_PORT_IN_USE' })
  expect(err.message).toContain(`port ${port} is already in use`)
  expect(err.hint).toContain('another agent may be running')
  expect(err.hint).toContain('--listen /ip4/0.0.0.0/tcp/PORT')
})

it('refuses a listen address or peer address that is not a multiaddr', async () => {
  await expect(start(['127.0.0.1:7321'])).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
  await expect(start(['/ip4/127.0.0.1/tcp/0'], ['not an address'])).rejects.toMatchObject({ code: 'ERR_BAD_ARGUMENT' })
})

it('an agent that cannot describe its machine does not start', async () => {
  await expect(start(['/ip4/127.0.0.1/tcp/0'], [], () => { throw new Error('no hardware info') })).rejects.toThrow('no hardware info')
})
