'use strict'
// Runs mock-ipfs-pinning-service (an in-memory implementation of the API, from npm) on
// 127.0.0.1 and a free port, and prints "listening on http://127.0.0.1:PORT" once it listens.
// Usage: node --require offline.cjs mock-server.cjs TOKEN
const http = require('http')
const { setup } = require('mock-ipfs-pinning-service')

const token = process.argv[2]
setup({ token, loglevel: 'error' }).then((service) => {
  const server = http.createServer(service)
  server.listen(0, '127.0.0.1', () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}`)
  })
  const stop = () => server.close(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
})
