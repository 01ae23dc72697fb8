// Runs y-webrtc's own client code (a WebrtcProvider and its signaling connection) against a
// signaling server. `maxConns: 0` keeps the provider from opening WebRTC connections, which
// Node lacks; only signaling is exercised.
//
//   node y-webrtc-client.mjs ws://127.0.0.1:PORT ROOM first    # prints "ready" once its own
//       announcement came back, then exits 0 when another peer's announcement arrives
//   node y-webrtc-client.mjs ws://127.0.0.1:PORT ROOM second   # exits 0 when its own
//       announcement comes back with "clients": 2
import WebSocket from 'ws'

globalThis.WebSocket = WebSocket
const Y = await import('yjs')
const { WebrtcProvider } = await import('y-webrtc')

const [url, room, role] = process.argv.slice(2)
const timer = setTimeout(() => {
  console.error(`${role}: timed out`)
  process.exit(1)
}, 10000)
const done = message => {
  console.log(message)
  clearTimeout(timer)
  provider.destroy()
  process.exit(0)
}

const provider = new WebrtcProvider(room, new Y.Doc(), { signaling: [url], maxConns: 0 })
for (const conn of provider.signalingConns) {
  conn.on('message', m => {
    if (m.type !== 'publish' || m.topic !== room || m.data?.type !== 'announce') return
    const me = provider.room?.peerId
    if (role === 'first' && m.data.from === me) console.log('ready')
    if (role === 'first' && m.data.from !== me) done(`first: saw ${m.data.from} (clients: ${m.clients})`)
    if (role === 'second' && m.data.from === me && m.clients === 2) done('second: own announcement relayed to 2 clients')
  })
}
