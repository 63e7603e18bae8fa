'use strict'

// A local Haraka plugin that reports the happy-eyeballs health cache as data: its size, its
// bound (the plugin's parsed [cache] max_entries), the largest size seen right after any
// record(), and how many distinct keys were offered to it (so a size at the bound can be told
// apart from a cache that was never pressed). Haraka has no API for one plugin to read
// another's state; the plugin registry module is reachable through haraka_require. Distinct
// keys are counted the way lib/health.ts keys its entries (one per address, one per MX host
// and family). The numbers go to probe.json in the Haraka dir whenever they change.

const fsp = require('node:fs/promises')
const path = require('node:path')

const PROBE_PLUGIN_NAME = 'soak_probe'
const PROBE_FILE = 'probe.json'

const PROBE_PLUGIN = `'use strict'
const fs = require('node:fs')
const path = require('node:path')
const FILE = path.join(process.env.HARAKA, ${JSON.stringify(PROBE_FILE)})

exports.register = function () {
  const plugins = this.haraka_require('plugins')
  const seen = new Set()
  let wrapped = null
  let peak = 0
  let last = ''
  const sample = () => {
    const he = plugins.registered_plugins['happy-eyeballs']
    const state = he && he.happy_eyeballs
    if (!state || !state.health) return
    const health = state.health
    if (wrapped !== health) {
      const record = health.record
      health.record = function (address, family, exchange) {
        seen.add('a ' + address)
        if (exchange) seen.add('f ' + String(exchange).toLowerCase() + ' ' + family)
        const result = record.apply(this, arguments)
        if (health.size > peak) peak = health.size
        return result
      }
      wrapped = health
    }
    const json = JSON.stringify({ size: health.size, peak, maxEntries: state.settings.cache.maxEntries, distinct: seen.size })
    if (json !== last) {
      last = json
      // Written whole and renamed, so a reader never sees half a file.
      fs.writeFileSync(FILE + '.tmp', json)
      fs.renameSync(FILE + '.tmp', FILE)
    }
  }
  sample()
  setInterval(sample, 100).unref()
}
`

/**
 * The probe's last numbers from a Haraka dir, or null when it wrote none.
 * @param {string} dir
 * @returns {Promise<{size: number, peak: number, maxEntries: number, distinct: number} | null>}
 */
async function readProbe(dir) {
  try {
    return JSON.parse(await fsp.readFile(path.join(dir, PROBE_FILE), 'utf8'))
  } catch (err) {
    if (err.code === 'ENOENT') return null
    throw err
  }
}

module.exports = { PROBE_PLUGIN_NAME, PROBE_PLUGIN, readProbe }
