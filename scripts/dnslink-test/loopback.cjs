'use strict'
// Preloaded (`node --require`) by tests/test_dnslink_harness.py into the DNSLink test harness.
// @dnslink/test starts its dns2 server with `listen()` and no address, which binds the UDP, TCP
// and DoH sockets on every interface. This makes each of them listen on 127.0.0.1 (random ports)
// instead, so the server the harness runs can be reached from this machine only.
const { createServer } = require('dns2')

const LOOPBACK = '127.0.0.1'

// dns2 exports only the factory: its class is the prototype of a server made with no sockets
const DNSServer = Object.getPrototypeOf(createServer({})).constructor

DNSServer.prototype.listen = function listenOnLoopback () {
  for (const server of Object.values(this.servers)) {
    server.listen(0, LOOPBACK)
  }
  return this.listening
}
