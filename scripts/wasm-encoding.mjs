/** The few pieces of the WebAssembly binary format the build-*-wasm.mjs scripts encode by hand. */
export const uleb = (n) => { const o = []; do { let b = n & 0x7f; n >>>= 7; if (n !== 0) b |= 0x80; o.push(b) } while (n !== 0); return o }
export const sleb = (n) => { const o = []; for (;;) { const b = n & 0x7f; n >>= 7; if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { o.push(b); return o } o.push(b | 0x80) } }
export const vec = (items) => [...uleb(items.length), ...items.flat()]
export const str = (s) => vec([...Buffer.from(s, 'utf8')].map((b) => [b]))
export const section = (id, bytes) => [id, ...uleb(bytes.length), ...bytes]
export const I32 = 0x7f
export const I64 = 0x7e
export const V128 = 0x7b
export const VOID = 0x40
