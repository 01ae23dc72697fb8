// Preloaded into y-webrtc's signaling server by the benchmark: `server.listen(port)` binds to
// 127.0.0.1 only, so the baseline never opens a port on other interfaces.
'use strict'
const net = require('net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const portOnly = (typeof args[0] === 'number' || typeof args[0] === 'string') &&
    (args.length === 1 || typeof args[1] === 'function')
  if (portOnly) args.splice(1, 0, '127.0.0.1')
  return listen.apply(this, args)
}
