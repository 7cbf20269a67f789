'use strict'
// Preloaded (`node --require`) by tests/test_pinning_service.py into the Pinning Service API's
// compliance checker and the mock service. Three things:
//  1. The checker reads the API's OpenAPI document (v1.0.0) from GitHub (oas2joi, through
//     swagger-parser); this hands swagger-parser a local copy instead (HALODB_PSA_SPEC): the one
//     the mock-ipfs-pinning-service package ships (api/oas-doc.yaml, v0.1.2, whose paths and
//     schemas are those of v1.0.0: only descriptions differ), so the run needs no network.
//  2. Every TCP connection to a host other than the loopback is refused: the run can only
//     talk to the servers the test started on 127.0.0.1 (a refused connection fails the run).
//  3. With HALODB_PSA_PACE_MS, the checker's pace of one request a second goes (pace.mjs).
const Module = require('module')
const net = require('net')
const { pathToFileURL } = require('url')

if (process.env.HALODB_PSA_PACE_MS) Module.register('./pace.mjs', pathToFileURL(__filename))

const SPEC = process.env.HALODB_PSA_SPEC
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]'])

// oas2joi (CommonJS, imported by the ES module checker) reads the document with
// SwaggerParser.dereference(url): that call gets the local copy instead of a GitHub URL
const SPEC_URL = /^https:\/\/raw\.githubusercontent\.com\/ipfs\/pinning-services-api-spec\/v1\.0\.0\/ipfs-pinning-service\.yaml$/
const load = Module._load
Module._load = function loadOffline (request) {
  const loaded = load.apply(this, arguments)
  if (request === 'swagger-parser' && SPEC && !loaded.__halodbOffline) {
    const dereference = loaded.dereference
    loaded.dereference = function dereferenceOffline (location, ...rest) {
      return dereference.call(this, SPEC_URL.test(String(location)) ? SPEC : location, ...rest)
    }
    loaded.__halodbOffline = true
  }
  return loaded
}

function hostOf (args) {
  const first = args[0]
  if (Array.isArray(first)) return hostOf(first)
  if (first !== null && typeof first === 'object') return first.path ? 'localhost' : (first.host || 'localhost')
  if (typeof first === 'string' && !/^\d+$/.test(first)) return 'localhost' // a unix socket path
  return typeof args[1] === 'string' ? args[1] : 'localhost'
}

const connect = net.Socket.prototype.connect
net.Socket.prototype.connect = function connectLoopbackOnly (...args) {
  const host = hostOf(args)
  if (!LOOPBACK.has(host)) {
    const error = new Error(`offline.cjs: refused a connection to ${host} (only the loopback is allowed)`)
    process.nextTick(() => this.destroy(error))
    console.error(error.message)
    process.exitCode = 3
    return this
  }
  return connect.apply(this, args)
}
