// Loaded by offline.cjs through Node's module hooks when HALODB_PSA_PACE_MS is set: the
// compliance checker paces its requests to one a second per service (p-queue, interval 1000),
// politeness a public service deserves; a test's server on the loopback does not need it, and
// the pace made the run take a minute. Only the pace changes: every check runs as written.
const PACED = /\/@ipfs-shipyard\/pinning-service-compliance\/dist\/src\/utils\/getQueue\.js$/

export async function load (url, context, nextLoad) {
  const result = await nextLoad(url, context)
  const pace = process.env.HALODB_PSA_PACE_MS
  if (pace && PACED.test(url)) {
    const source = typeof result.source === 'string' ? result.source : new TextDecoder().decode(result.source)
    // (offline.cjs is preloaded into the hooks' own thread too, so this hook may run twice)
    if (!/interval: \d+/.test(source)) throw new Error(`pace.mjs: ${url} no longer paces with interval: N`)
    return { ...result, source: source.replace(/interval: \d+/, `interval: ${Number(pace)}`) }
  }
  return result
}
