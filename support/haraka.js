'use strict'

// Real Haraka processes on loopback: a fresh temp dir each, every resolver pointed at the test
// DNS, the plugin installed from its packed tarball (or linked from the checkout), and every
// outcome recorded as data (./outcomes). stop() ends the process by PID and removes the dir.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const fsp = require('node:fs/promises')
const os = require('node:os')
const path = require('node:path')

const { makeWaiters } = require('./clock')
const { OUTCOME_PLUGIN, OUTCOME_PLUGIN_NAME, outcomeReader, ofTransaction } = require('./outcomes')
const { REPO_ROOT, PLUGIN_NAME, installedPlugin } = require('./package')
const { freePort } = require('./ports')

const MODULES = path.join(REPO_ROOT, 'node_modules')

/** Haraka versions under test: version → absolute package directory. */
const HARAKA_VERSIONS = {
  '3.3.4': path.join(MODULES, 'Haraka'),
  '3.0.3': path.join(MODULES, 'haraka30'),
}

/** Haraka's "server is listening" notice (same text in 3.3.4 and 3.0.3, server.js). */
const LISTENING_RE = (port) => new RegExp(`\\] Listening on 127\\.0\\.0\\.1:${port}\\b`)

/**
 * Outcome lines written by outbound/hmail.js, identical in 3.3.4 and 3.0.3:
 *  - delivered(): lognotice({ 'delivered file': ..., domain, host, ip, port, mode, ... })
 *  - deferred_respond(): loginfo(`Temp failing ${filename} for ${delay} seconds: ${err}`)
 *  - bounce(): loginfo(`bouncing mail: ${err}`)
 * The uuid of an outbound item is its transaction's uuid plus ".<n>". Only for tests that check
 * the log text; what happened comes from the recorded outcomes.
 */
const OUTCOME_TEXT = '(?:delivered file=|Temp failing |bouncing mail: ).*$'
const OUTCOME_RE = new RegExp(`^.*\\[outbound\\]\\s+${OUTCOME_TEXT}`, 'm')

/** The outcome line regex restricted to the outbound items of one transaction uuid. */
function outcomeRe(uuid) {
  if (!uuid) return OUTCOME_RE
  const id = uuid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`^.*\\[${id}(?:\\.\\d+)*\\] \\[outbound\\]\\s+${OUTCOME_TEXT}`, 'm')
}

/**
 * The transaction uuid from Haraka's queue reply in a sendMail() result
 * ("250 Message Queued (<uuid>)"), or undefined.
 * @param {{response?: string}} info
 * @returns {string|undefined}
 */
function queuedUuid(info) {
  const m = /Message Queued \(([0-9A-F-]+(?:\.\d+)*)\)/i.exec((info && info.response) || '')
  return m ? m[1] : undefined
}

/** Haraka's own copy of haraka-net-utils' dns_config for a version directory. */
function dnsConfigPath(versionDir) {
  return require.resolve('haraka-net-utils/lib/dns_config', { paths: [versionDir] })
}

/** Source of the local test_setup plugin. */
function testSetupPlugin({ dnsPort, dnsConfig }) {
  return `'use strict'
// Test-only plugin: trusts every client, answers rDNS locally and points every
// resolver Haraka uses at the test DNS server on loopback.
const dns = require('node:dns')
const servers = ['127.0.0.1:${dnsPort}']

exports.register = function () {
  // haraka-net-utils' own Resolver: get_mx, resolve_mx_hosts, is_local_host
  require(${JSON.stringify(dnsConfig)}).getDnsResolver().setServers(servers)
  // node:dns default resolvers: 3.0.x outbound (mx_lookup A fallback, try_deliver dns.resolve)
  dns.setServers(servers)
  dns.promises.setServers(servers)
  this.loginfo('test DNS at ' + servers[0])
}

exports.hook_lookup_rdns = function (next) {
  next(OK, 'localhost')
}

exports.hook_connect = function (next, connection) {
  connection.relaying = true
  next()
}

exports.hook_mail = function (next, connection) {
  connection.relaying = true
  next()
}
`
}

/**
 * The plugin's own resolver uses the system's DNS servers when `[dns] servers` is empty, which
 * would send queries off this machine. Append a `[dns]` section pointing it at the test DNS
 * (a repeated section merges, the later key wins) unless the text already names servers, which
 * must then all be on loopback.
 */
function pluginDnsOnLoopback(ini, dnsPort) {
  const named = [...ini.matchAll(/^\s*servers\s*=\s*(\S.*?)\s*$/gm)].map((m) => m[1])
  if (!named.length)
    return `${ini}${ini && !ini.endsWith('\n') ? '\n' : ''}\n[dns]\nservers=127.0.0.1:${dnsPort}\n`
  for (const list of named) {
    for (const server of list.split(/\s*,\s*/)) {
      const host = server.replace(/^\[([^\]]+)\](?::\d+)?$/, '$1').replace(/^([\d.]+):\d+$/, '$1')
      if (!/^127\./.test(host) && host !== '::1') {
        throw new Error(`happy_eyeballs.ini: DNS server ${server} is not on loopback`)
      }
    }
  }
  return ini
}

/**
 * Starts a real Haraka process in a fresh temp dir, listening on 127.0.0.1:<free port>.
 * @param {{version?: string, dnsPort: number, plugins?: string[], outbound?: object,
 *   files?: Object<string, string>, pluginFiles?: Object<string, string>, caCert?: string,
 *   forceTlsHosts?: string[], nodes?: number, nodeArgs?: string[], outcomeRecords?: boolean}} opts
 *   `outcomeRecords: false` leaves the DeliveryRecord out of each recorded outcome (a CPU
 *   measurement then does not count the recorder's JSON of it); `nodes` is smtp.ini
 *   nodes (cluster workers, default 0: one process); `nodeArgs` go to node before Haraka's
 *   script (e.g. `--cpu-prof`; the process's cwd is its temp dir, so give absolute paths); with
 *   nodeArgs, stop() sends SIGINT (Haraka exits through process.exit, so node writes what such
 *   options ask for on exit; SIGTERM ends it at once); `outbound`
 *   overrides outbound.ini key by key (a key set to undefined is left out, so Haraka's own
 *   default applies); `caCert` (PEM) is written into the temp dir and trusted by the process
 *   through NODE_EXTRA_CA_CERTS; `forceTlsHosts` writes tls.ini `[outbound] force_tls_hosts[]=`
 *   lines; `files` are written verbatim into config/ last (so they may replace any
 *   generated file); `pluginFiles` maps a plugin name to the source of a local plugin written
 *   as plugins/<name>.js (list the name in `plugins` to load it). With 'happy-eyeballs' in `plugins`,
 *   node_modules/haraka-plugin-happy-eyeballs links to the plugin as `pluginFrom` says: 'package'
 *   (the default) the packed tarball installed once per process (./package), 'checkout' this
 *   working tree; happy_eyeballs.ini gets `[dns] servers=127.0.0.1:<dnsPort>` unless it names
 *   (loopback) servers itself. The outcome recorder (./outcomes) is always listed last.
 * @returns {Promise<HarakaHandle>}
 *
 * @typedef {object} HarakaHandle
 * @property {string} dir
 * @property {number} port
 * @property {number} pid
 * @property {string} version
 * @property {() => string} log
 * @property {() => number} logLength
 * @property {() => object|null} exitInfo
 * @property {(re: RegExp, timeoutMs?: number, opts?: {from?: number}) => Promise<RegExpExecArray & {offset: number}>} waitForLog
 * @property {() => import('./outcomes').Outcome[]} outcomes  every outcome recorded so far
 * @property {(uuid: string, timeoutMs?: number, opts?: {nth?: number}) =>
 *   Promise<import('./outcomes').Outcome>} waitForOutcomeOf  the first (or nth, from 0) outcome of
 *   the transaction (or item) `uuid`
 * @property {() => Promise<void>} stop
 */
async function startHaraka({
  version = '3.3.4',
  dnsPort,
  plugins = [],
  outbound = {},
  files = {},
  pluginFiles = {},
  caCert,
  forceTlsHosts,
  pluginFrom = 'package',
  nodes = 0,
  nodeArgs = [],
  outcomeRecords = true,
} = {}) {
  const versionDir = HARAKA_VERSIONS[version]
  if (!versionDir) throw new Error(`unknown Haraka version ${version}`)
  if (!dnsPort) throw new Error('startHaraka: dnsPort is required')
  if (pluginFrom !== 'package' && pluginFrom !== 'checkout')
    throw new Error(`startHaraka: pluginFrom ${pluginFrom}?`)
  const withPlugin = plugins.includes('happy-eyeballs')
  // Before the temp dir exists: the first call of a process packs and installs the plugin.
  const pluginDir = withPlugin && pluginFrom === 'package' ? (await installedPlugin()).installed : REPO_ROOT

  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `he-e2e-haraka-${version}-`))
  let child = null
  let port
  try {
    port = await freePort()
    const cfg = path.join(dir, 'config')
    await fsp.mkdir(cfg)
    await fsp.mkdir(path.join(dir, 'plugins'))
    const write = (name, text) => fsp.writeFile(path.join(cfg, name), text)

    await write('smtp.ini', `listen=127.0.0.1:${port}\nnodes=${Number(nodes) || 0}\npublic_ip=127.0.0.1\n`)
    const connIni = path.join(versionDir, 'config', 'connection.ini')
    if (fs.existsSync(connIni)) await fsp.copyFile(connIni, path.join(cfg, 'connection.ini'))
    await write('me', 'haraka.test\n')
    await write('log.ini', '[main]\nlevel=info\ntimestamps=false\nformat=default\n')
    const ob = { enable_tls: false, local_mx_ok: true, connect_timeout: 30, ...outbound }
    await write(
      'outbound.ini',
      Object.entries(ob)
        .filter(([, v]) => v !== undefined && v !== null)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    )
    await write('plugins', ['test_setup', ...plugins, OUTCOME_PLUGIN_NAME].map((p) => `${p}\n`).join(''))
    await fsp.writeFile(
      path.join(dir, 'plugins', 'test_setup.js'),
      testSetupPlugin({ dnsPort, dnsConfig: dnsConfigPath(versionDir) }),
    )
    await fsp.writeFile(path.join(dir, 'plugins', `${OUTCOME_PLUGIN_NAME}.js`), OUTCOME_PLUGIN)
    for (const [name, source] of Object.entries(pluginFiles)) {
      if (!/^[\w.-]+$/.test(name)) throw new Error(`startHaraka: bad plugin name ${name}`)
      await fsp.writeFile(path.join(dir, 'plugins', `${name}.js`), source)
    }
    if (withPlugin) {
      await fsp.mkdir(path.join(dir, 'node_modules'))
      await fsp.symlink(pluginDir, path.join(dir, 'node_modules', PLUGIN_NAME), 'dir')
    }
    const extra = { ...files }
    if (forceTlsHosts && !extra['tls.ini']) {
      extra['tls.ini'] = `[outbound]\n${forceTlsHosts.map((h) => `force_tls_hosts[]=${h}\n`).join('')}`
    }
    if (withPlugin) {
      extra['happy_eyeballs.ini'] = pluginDnsOnLoopback(extra['happy_eyeballs.ini'] || '', dnsPort)
    }
    for (const [name, text] of Object.entries(extra)) await write(name, text)

    const env = { ...process.env }
    if (!outcomeRecords) env.HE_OUTCOME_RECORDS = '0'
    delete env.HARAKA
    delete env.HARAKA_TEST_DIR
    delete env.NODE_OPTIONS
    delete env.NODE_EXTRA_CA_CERTS
    if (caCert) {
      const caFile = path.join(dir, 'test-ca.pem')
      await fsp.writeFile(caFile, caCert)
      env.NODE_EXTRA_CA_CERTS = caFile
    }
    child = spawn(process.execPath, [...nodeArgs, path.join(versionDir, 'bin', 'haraka'), '-c', dir], {
      cwd: dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: false,
    })
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true })
    throw err
  }

  let log = ''
  const recorded = outcomeReader(dir)
  let exited = false
  let exitInfo = null
  const waiters = makeWaiters()
  let markExited
  const exitPromise = new Promise((resolve) => {
    markExited = (info, why) => {
      if (exited) return
      exited = true
      exitInfo = info
      waiters.failAll(new Error(`Haraka ${version} ${why}; log tail:\n${tail(log)}`))
      resolve()
    }
  })
  child.once('exit', (code, signal) => markExited({ code, signal }, `exited (${code ?? signal})`))
  child.once('error', (err) => {
    log += `\n[harness] spawn error: ${err.message}\n`
    if (child.pid === undefined) markExited({ code: null, signal: null, error: err }, 'could not be started')
  })
  const onData = (d) => {
    log += d
    waiters.poke()
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)

  let stopping = null
  const haraka = {
    dir,
    port,
    pid: child.pid,
    version,
    log: () => log,
    logLength: () => log.length,
    exitInfo: () => exitInfo,
    outcomes: () => recorded.read(),
    waitForOutcomeOf(uuid, timeoutMs = 60000, { nth = 0 } = {}) {
      const find = () => recorded.read().filter((o) => ofTransaction(o, uuid))[nth]
      if (exited) {
        const o = find()
        if (o) return Promise.resolve(o)
        return Promise.reject(
          new Error(`Haraka ${version} is not running; no outcome of ${uuid}:\n${tail(log)}`),
        )
      }
      return waiters.wait(
        find,
        timeoutMs,
        () => `the outcome of ${uuid} from Haraka ${version}; log tail:\n${tail(log)}`,
      )
    },
    waitForLog(re, timeoutMs = 10000, { from = 0 } = {}) {
      if (re.global || re.sticky) re = new RegExp(re.source, re.flags.replace(/[gy]/g, ''))
      if (exited) {
        const m = re.exec(log.slice(from))
        if (m) return Promise.resolve(Object.assign(m, { offset: from + m.index }))
        return Promise.reject(new Error(`Haraka ${version} is not running; ${re} not in log:\n${tail(log)}`))
      }
      return waiters.wait(
        () => {
          const m = re.exec(log.slice(from))
          return m && Object.assign(m, { offset: from + m.index })
        },
        timeoutMs,
        () => `${re} in the Haraka ${version} log; tail:\n${tail(log.slice(from))}`,
      )
    },
    stop() {
      if (!stopping) {
        stopping = (async () => {
          if (!exited) {
            try {
              process.kill(child.pid, nodeArgs.length ? 'SIGINT' : 'SIGTERM')
            } catch {
              // already gone
            }
            const t = setTimeout(() => {
              if (!exited) {
                try {
                  process.kill(child.pid, 'SIGKILL')
                } catch {
                  // already gone
                }
              }
            }, 5000)
            await exitPromise
            clearTimeout(t)
          }
          child.stdout.destroy()
          child.stderr.destroy()
          await fsp.rm(dir, { recursive: true, force: true })
        })()
      }
      return stopping
    },
  }

  try {
    await haraka.waitForLog(LISTENING_RE(port), 20000)
  } catch (err) {
    await haraka.stop()
    throw new Error(`Haraka ${version} did not start listening on 127.0.0.1:${port}: ${err.message}`, {
      cause: err,
    })
  }
  return haraka
}

function tail(text, lines = 40) {
  return text.split('\n').slice(-lines).join('\n')
}

/**
 * Submits one message to 127.0.0.1:port with nodemailer (plain SMTP, no TLS, no auth).
 * @param {{port: number, from?: string, to: string|string[], subject?: string, text?: string}} opts
 * @returns {Promise<object>} nodemailer's info (accepted, rejected, response, envelope, messageId)
 */
/**
 * A nodemailer transport to 127.0.0.1:port (plain SMTP, no TLS, no auth); `pool` (a number)
 * makes it a pool of that many connections. Close it when done.
 * @param {number} port
 * @param {{pool?: number}} [opts]
 */
function submitTransport(port, { pool } = {}) {
  const nodemailer = require('nodemailer')
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: true,
    name: 'client.test',
    ...(pool ? { pool: true, maxConnections: pool, maxMessages: Infinity } : {}),
    connectionTimeout: 10000,
    greetingTimeout: 10000,
    socketTimeout: 30000,
  })
}

async function sendMail({ port, from = 'sender@haraka.test', to, subject = 'test', text = 'hello' }) {
  const transport = submitTransport(port)
  try {
    return await transport.sendMail({ from, to, subject, text })
  } finally {
    transport.close()
  }
}

/**
 * Reads Haraka's outbound queue dir: every queue file with the uuid and domain from its todo
 * header (4-byte big-endian length, then JSON). `__tmp__.` files are being written; `error.`
 * files are ones Haraka could not read back.
 * @param {string} dir
 * @returns {Promise<{files: Array<{name: string, uuid?: string, domain?: string, bad?: string}>,
 *   errorFiles: string[], tmpFiles: string[]}>}
 */
async function scanQueue(dir) {
  const out = { files: [], errorFiles: [], tmpFiles: [] }
  let names
  try {
    names = await fsp.readdir(dir)
  } catch (err) {
    if (err.code === 'ENOENT') return out
    throw err
  }
  for (const name of names.sort()) {
    if (name.startsWith('__tmp__.')) out.tmpFiles.push(name)
    else if (name.startsWith('error.')) out.errorFiles.push(name)
    else if (!name.startsWith('.')) {
      const file = { name }
      let handle
      try {
        handle = await fsp.open(path.join(dir, name), 'r')
        const head = Buffer.alloc(4)
        await handle.read(head, 0, 4, 0)
        const len = head.readUInt32BE(0)
        const body = Buffer.alloc(len)
        await handle.read(body, 0, len, 4)
        const todo = JSON.parse(body.toString('utf8'))
        file.uuid = todo.uuid
        file.domain = todo.domain
      } catch (err) {
        file.bad = err.message
      } finally {
        if (handle) await handle.close()
      }
      out.files.push(file)
    }
  }
  return out
}

/**
 * @typedef {object} OutcomeSeen
 * @property {'delivered'|'deferred'|'bounced'} kind
 * @property {string} uuid  the outbound item
 * @property {string} [host]
 * @property {string} [ip]
 * @property {number} [port]
 * @property {string} [response]
 * @property {string} [err]
 * @property {object|null} record  the plugin's DeliveryRecord
 * @property {import('./outcomes').Outcome} outcome  as recorded
 * @property {string} line  Haraka's log line for it, for tests of that text and for messages
 * @property {number} offset  where that line starts in the log
 */

/**
 * Waits for the first outbound outcome after the log offset `from` (default: the log length at
 * the time of the call; take `haraka.logLength()` BEFORE sendMail to avoid a race). `uuid` (see
 * queuedUuid) restricts it to one submitted message, so that e.g. a bounce DSN of an earlier
 * message is not taken for the outcome of this one. What happened comes from the recorded
 * outcome; Haraka's log line is found too, for tests that check its text.
 * @param {HarakaHandle} haraka
 * @param {number} [timeoutMs]
 * @param {{from?: number, uuid?: string}} [opts]
 * @returns {Promise<OutcomeSeen>}
 */
async function waitForOutcome(haraka, timeoutMs = 60000, { from = haraka.logLength(), uuid } = {}) {
  const m = await haraka.waitForLog(outcomeRe(uuid), timeoutMs, { from })
  const item = ITEM_RE.exec(m[0])[1]
  // The nth outcome of this item: a message deferred before `from` has an earlier one.
  const earlier = haraka
    .log()
    .slice(0, m.offset)
    .match(new RegExp(outcomeRe(item).source, 'gm'))
  const o = await haraka.waitForOutcomeOf(item, timeoutMs, { nth: earlier ? earlier.length : 0 })
  const { host, ip, port, response, err } = o.haraka
  return {
    kind: o.kind,
    uuid: o.uuid,
    host,
    ip,
    port,
    response,
    err,
    // Seconds until the retry of a deferral, as the deferred hooks left it.
    ...(o.kind === 'deferred' ? { delay: o.haraka.delay } : {}),
    record: o.record,
    outcome: o,
    line: m[0],
    offset: m.offset,
  }
}

/** The outbound item uuid of an outcome line. */
const ITEM_RE = /\[([0-9A-F-]+(?:\.\d+)+)\] \[outbound\]/i

/**
 * outbound.ini for delivering to MX stand-ins on loopback: Haraka 3.3.x skips loopback MX
 * addresses unless local_mx_ok=true; 3.0.x only checks MX host names it resolved itself, so
 * the plugin's IP literals pass with its default.
 * @param {string} version
 * @param {number} [connectTimeoutS]
 */
function loopbackOutbound(version, connectTimeoutS = 30) {
  return { local_mx_ok: version === '3.0.3' ? undefined : true, connect_timeout: connectTimeoutS }
}

/** happy_eyeballs.ini lines that let the plugin plan the loopback stand-ins. */
const LOOPBACK_FILTER = '[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n'

module.exports = {
  HARAKA_VERSIONS,
  LOOPBACK_FILTER,
  loopbackOutbound,
  OUTCOME_RE,
  outcomeRe,
  queuedUuid,
  startHaraka,
  submitTransport,
  sendMail,
  waitForOutcome,
  scanQueue,
}
