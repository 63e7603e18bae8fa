'use strict'

// End-to-end harness: real Haraka processes, a recording SMTP sink, a loopback
// black hole and a small SMTP client. Everything listens and connects on loopback
// only (127.0.0.0/8 and ::1); every process and temp dir it creates is removed by
// the matching stop()/close().

const { spawn, execFile } = require('node:child_process')
const fs = require('node:fs')
const fsp = require('node:fs/promises')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const REPO_ROOT = path.resolve(__dirname, '..', '..')
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
 *      → "[NOTICE] [uuid] [outbound]  delivered file=<qfile> domain=<d> host=<h> ip=<ip> port=<p> ..."
 *  - deferred_respond(): loginfo(`Temp failing ${filename} for ${delay} seconds: ${err}`)
 *  - bounce(): loginfo(`bouncing mail: ${err}`)
 * The uuid of an outbound item is its transaction's uuid plus ".<n>".
 */
const OUTCOME_TEXT =
  '(?:(delivered) file=\\S+ domain=\\S+ host=(\\S*) ip=(\\S*) port=(\\d*).*|Temp failing (\\S+) for (\\d+(?:\\.\\d+)?) seconds: (.*)|bouncing mail: (.*))$'
const OUTCOME_RE = new RegExp(`^.*\\[outbound\\]\\s+${OUTCOME_TEXT}`, 'm')

/** The outcome regex restricted to the outbound items of one transaction uuid. */
function outcomeRe(uuid) {
  if (!uuid) return OUTCOME_RE
  const id = uuid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`^.*\\[${id}(?:\\.\\d+)*\\] \\[outbound\\]\\s+${OUTCOME_TEXT}`, 'm')
}

/**
 * The transaction uuid from Haraka's queue reply in a sendMail() result
 * ("250 Message Queued (<uuid>.1)"), or undefined.
 * @param {{response?: string}} info
 * @returns {string|undefined}
 */
function queuedUuid(info) {
  const m = /Message Queued \(([0-9A-F-]+(?:\.\d+)*)\)/i.exec((info && info.response) || '')
  return m ? m[1] : undefined
}

/** Upper bound for the life of a black-hole helper process, whatever happens to the caller. */
const BLACK_HOLE_MAX_MS = 10 * 60 * 1000

let tlsMaterial = null

/**
 * A throwaway self-signed key/cert pair made once per process with the openssl CLI.
 * The temp dir it is written to is removed at once; the PEM text stays in memory.
 * @returns {Promise<{key: string, cert: string}>}
 */
async function selfSignedCert() {
  if (tlsMaterial) return tlsMaterial
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'he-e2e-tls-'))
  try {
    const keyFile = path.join(dir, 'key.pem')
    const certFile = path.join(dir, 'cert.pem')
    await new Promise((resolve, reject) => {
      execFile(
        '/usr/bin/openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          keyFile,
          '-out',
          certFile,
          '-days',
          '2',
          '-subj',
          '/CN=sink.test',
        ],
        { timeout: 20000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`openssl failed: ${err.message} ${stderr}`)) : resolve(),
      )
    })
    tlsMaterial = { key: await fsp.readFile(keyFile, 'utf8'), cert: await fsp.readFile(certFile, 'utf8') }
    return tlsMaterial
  } finally {
    await fsp.rm(dir, { recursive: true, force: true })
  }
}

/** Runs the openssl CLI; rejects with its stderr. */
function openssl(args, cwd) {
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/openssl', args, { cwd, timeout: 20000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`openssl ${args[0]} failed: ${err.message} ${stderr}`)) : resolve(),
    )
  })
}

/**
 * A throwaway certificate authority and one CA-signed leaf certificate per host name (subject
 * alternative name DNS:<name>), made with the openssl CLI in a temp dir that is removed at once;
 * the PEM text stays in memory. Trust the CA in a Haraka process with startHaraka's `caCert`.
 * @param {string[]} names
 * @returns {Promise<{caCert: string, leaf: Object<string, {key: string, cert: string}>}>}
 */
async function makeTestCa(names) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'he-e2e-ca-'))
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  try {
    await openssl(
      [
        'req',
        '-x509',
        ...ec,
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        '-days',
        '2',
        '-subj',
        '/CN=happy-eyeballs test CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    )
    const leaf = {}
    for (const [i, name] of names.entries()) {
      if (!/^[a-z0-9.-]+$/i.test(name)) throw new Error(`makeTestCa: bad host name ${name}`)
      await openssl(
        ['req', '-new', ...ec, '-keyout', `${i}.key`, '-out', `${i}.csr`, '-subj', `/CN=${name}`],
        dir,
      )
      await fsp.writeFile(
        path.join(dir, `${i}.ext`),
        `subjectAltName=DNS:${name}
basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth
`,
      )
      await openssl(
        [
          'x509',
          '-req',
          '-in',
          `${i}.csr`,
          '-CA',
          'ca.pem',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-days',
          '2',
          '-extfile',
          `${i}.ext`,
          '-out',
          `${i}.pem`,
        ],
        dir,
      )
      leaf[name] = {
        key: await fsp.readFile(path.join(dir, `${i}.key`), 'utf8'),
        cert: await fsp.readFile(path.join(dir, `${i}.pem`), 'utf8'),
      }
    }
    return { caCert: await fsp.readFile(path.join(dir, 'ca.pem'), 'utf8'), leaf }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true })
  }
}

/**
 * A free TCP port on a loopback host, found by binding port 0 and closing again.
 * @param {string} [host]
 * @returns {Promise<number>}
 */
function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen({ host, port: 0 }, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * A set of pending waits: wait(check) resolves with check()'s first truthy value, re-checked on
 * every poke(), or rejects after timeoutMs; failAll() rejects every pending wait.
 */
function makeWaiters() {
  const waiters = new Set()
  return {
    wait(check, timeoutMs, describe) {
      return new Promise((resolve, reject) => {
        const first = check()
        if (first) return resolve(first)
        const w = {
          check,
          resolve,
          reject,
          timer: setTimeout(() => {
            waiters.delete(w)
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`))
          }, timeoutMs),
        }
        waiters.add(w)
      })
    },
    poke() {
      for (const w of [...waiters]) {
        let res
        try {
          res = w.check()
        } catch (err) {
          waiters.delete(w)
          clearTimeout(w.timer)
          w.reject(err)
          continue
        }
        if (res) {
          waiters.delete(w)
          clearTimeout(w.timer)
          w.resolve(res)
        }
      }
    },
    failAll(err) {
      for (const w of [...waiters]) {
        waiters.delete(w)
        clearTimeout(w.timer)
        w.reject(err)
      }
    },
  }
}

/**
 * Starts a recording SMTP sink (smtp-server) on a loopback address.
 * `greeting` is the banner text; a greeting that starts with a 4xx/5xx code (e.g.
 * '421 try later') is instead sent as the reply to the connection, which is then closed.
 * `starttls` offers STARTTLS with `tls` ({key, cert}, e.g. a makeTestCa leaf) or else a
 * self-signed certificate for sink.test. `sni` lists the server name of every TLS handshake a
 * client started (null when it sent none); `secured` the server name of every completed one.
 * @param {{host?: string, port?: number, starttls?: boolean, tls?: {key: string, cert: string},
 *   greeting?: string}} [opts]
 * `receivedAt` of a message is performance.now() in this process when the sink took it (just
 * before its 250 reply), so callers can time delivery without polling latency.
 * @returns {Promise<{host: string, port: number, messages: Array<{from: string, to: string[], data: string,
 *   secure: boolean, servername: string|null, remoteAddress: string, receivedAt: number}>,
 *   connections: number, sni: Array<string|null>, secured: Array<string|null>,
 *   waitForMessages: (n: number, timeoutMs?: number) => Promise<object[]>, close: () => Promise<void>}>}
 */
async function startSink({ host = '127.0.0.1', port = 0, starttls = false, tls, greeting } = {}) {
  const { SMTPServer } = require('smtp-server')
  const waiters = makeWaiters()
  const reject = /^([45]\d\d)[ -](.*)$/.exec(greeting || '')
  const sink = {
    host,
    port: 0,
    messages: [],
    connections: 0,
    sni: [],
    secured: [],
    waitForMessages(n, timeoutMs = 10000) {
      return waiters.wait(
        () => sink.messages.length >= n && sink.messages,
        timeoutMs,
        () => `${n} message(s) at the sink ${host}:${sink.port} (got ${sink.messages.length})`,
      )
    },
    close: null,
  }

  const options = {
    name: 'sink.test',
    banner: reject ? undefined : greeting,
    authOptional: true,
    disabledCommands: starttls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 1000,
    socketTimeout: 30000,
    onConnect(session, cb) {
      if (!reject) return cb()
      const err = new Error(reject[2])
      err.responseCode = Number(reject[1])
      cb(err)
    },
    onData(stream, session, cb) {
      const chunks = []
      stream.on('data', (c) => chunks.push(c))
      stream.on('error', cb)
      stream.on('end', () => {
        sink.messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks).toString('utf8'),
          secure: !!session.secure,
          servername: session.servername || null,
          remoteAddress: session.remoteAddress,
          receivedAt: performance.now(),
        })
        cb(null, 'Message accepted by sink')
        waiters.poke()
      })
    },
  }
  if (starttls) {
    Object.assign(options, tls ? { key: tls.key, cert: tls.cert } : await selfSignedCert())
    // Called only when the client sends a server name; the default context answers.
    options.SNICallback = (servername, cb) => {
      sink.sni.push(servername || null)
      cb(null)
    }
    options.onSecure = (socket, session, cb) => {
      sink.secured.push(session.servername || null)
      cb()
    }
  }

  const server = new SMTPServer(options)
  server.on('error', () => {})
  server.server.on('connection', () => {
    sink.connections++
  })

  await new Promise((resolve, reject2) => {
    const onError = (err) => {
      reject2(
        err.code === 'EADDRINUSE'
          ? new Error(`sink: ${host}:${port} is already in use`)
          : new Error(`sink: cannot listen on ${host}:${port}: ${err.message}`),
      )
    }
    server.server.once('error', onError)
    server.server.listen({ host, port }, () => {
      server.server.removeListener('error', onError)
      resolve()
    })
  })
  sink.port = server.server.address().port

  let closing = null
  sink.close = () => {
    if (!closing) {
      closing = new Promise((resolve) => server.close(() => resolve()))
      waiters.failAll(new Error('sink closed'))
    }
    return closing
  }
  return sink
}

// The helper: binds, listen(0), fills the accept queue with non-blocking connects to
// itself, prints the port, then never accept()s. It exits when its stdin closes (the
// parent closed it or died) or after argv[4] seconds at the latest.
const BLACK_HOLE_PY = `
import select, socket, sys
host, port, fill, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(0)
port = s.getsockname()[1]
held = []
for _ in range(fill):
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect((host, port))
    except BlockingIOError:
        pass
    held.append(c)
print(port, flush=True)
select.select([sys.stdin], [], [], limit)
`

/**
 * Starts a loopback black hole: a listening TCP socket whose accept queue is full and never
 * drained, so new SYNs are dropped and a connect() to it hangs until the caller gives up.
 * Node (libuv) always accept()s on a listening socket, so the socket lives in a small python3
 * child that never calls accept(); close() ends that child by PID.
 * @param {{host?: string, port?: number}} [opts]
 * @returns {Promise<{host: string, port: number, pid: number, close: () => Promise<void>}>}
 */
function startBlackHole({ host = '::1', port = 0 } = {}) {
  const fill = 3
  const child = spawn(
    'python3',
    ['-c', BLACK_HOLE_PY, host, String(port), String(fill), String(BLACK_HOLE_MAX_MS / 1000)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  )
  let stderr = ''
  let exited = child.exitCode !== null
  const exitPromise = new Promise((resolve) => {
    child.once('exit', () => {
      exited = true
      resolve()
    })
  })
  child.stderr.on('data', (d) => (stderr += d))
  child.stdin.on('error', () => {})

  let closing = null
  const close = () => {
    if (!closing) {
      closing = (async () => {
        if (!exited) {
          child.stdin.end()
          const t = setTimeout(() => {
            if (exited) return
            try {
              process.kill(child.pid, 'SIGKILL')
            } catch {
              // already gone
            }
          }, 2000)
          await exitPromise
          clearTimeout(t)
        }
      })()
    }
    return closing
  }

  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      close().then(() => reject(new Error(`black hole on ${host}:${port} did not start: ${stderr}`)))
    }, 10000)
    child.once('error', (err) => {
      clearTimeout(timer)
      exited = true
      reject(new Error(`black hole: cannot run python3: ${err.message}`))
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`black hole on ${host}:${port} exited (${code}): ${stderr.trim()}`))
    })
    child.stdout.on('data', (d) => {
      out += d
      const m = /^(\d+)\n/.exec(out)
      if (!m) return
      clearTimeout(timer)
      resolve({ host, port: Number(m[1]), pid: child.pid, close })
    })
  })
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
 *   forceTlsHosts?: string[], nodes?: number}} opts  `nodes` is smtp.ini nodes (cluster workers,
 *   default 0: one process); `outbound`
 *   overrides outbound.ini key by key (a key set to undefined is left out, so Haraka's own
 *   default applies); `caCert` (PEM) is written into the temp dir and trusted by the process
 *   through NODE_EXTRA_CA_CERTS; `forceTlsHosts` writes tls.ini `[outbound] force_tls_hosts[]=`
 *   lines; `files` are written verbatim into config/ last (so they may replace any
 *   generated file); `pluginFiles` maps a plugin name to the source of a local plugin written
 *   as plugins/<name>.js (list the name in `plugins` to load it). With 'happy-eyeballs' in `plugins`,
 *   the repo is linked in as node_modules/haraka-plugin-happy-eyeballs and happy_eyeballs.ini
 *   gets `[dns] servers=127.0.0.1:<dnsPort>` unless it names (loopback) servers itself.
 * @returns {Promise<{dir: string, port: number, pid: number, version: string, log: () => string,
 *   logLength: () => number, waitForLog: (re: RegExp, timeoutMs?: number, opts?: {from?: number})
 *   => Promise<RegExpExecArray>, stop: () => Promise<void>}>}
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
  nodes = 0,
} = {}) {
  const versionDir = HARAKA_VERSIONS[version]
  if (!versionDir) throw new Error(`unknown Haraka version ${version}`)
  if (!dnsPort) throw new Error('startHaraka: dnsPort is required')

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
    await write('plugins', ['test_setup', ...plugins].map((p) => `${p}\n`).join(''))
    await fsp.writeFile(
      path.join(dir, 'plugins', 'test_setup.js'),
      testSetupPlugin({ dnsPort, dnsConfig: dnsConfigPath(versionDir) }),
    )
    for (const [name, source] of Object.entries(pluginFiles)) {
      if (!/^[\w.-]+$/.test(name)) throw new Error(`startHaraka: bad plugin name ${name}`)
      await fsp.writeFile(path.join(dir, 'plugins', `${name}.js`), source)
    }
    if (plugins.includes('happy-eyeballs')) {
      await fsp.mkdir(path.join(dir, 'node_modules'))
      await fsp.symlink(REPO_ROOT, path.join(dir, 'node_modules', 'haraka-plugin-happy-eyeballs'), 'dir')
    }
    const extra = { ...files }
    if (forceTlsHosts && !extra['tls.ini']) {
      extra['tls.ini'] = `[outbound]\n${forceTlsHosts.map((h) => `force_tls_hosts[]=${h}\n`).join('')}`
    }
    if (plugins.includes('happy-eyeballs')) {
      extra['happy_eyeballs.ini'] = pluginDnsOnLoopback(extra['happy_eyeballs.ini'] || '', dnsPort)
    }
    for (const [name, text] of Object.entries(extra)) await write(name, text)

    const env = { ...process.env }
    delete env.HARAKA
    delete env.HARAKA_TEST_DIR
    delete env.NODE_OPTIONS
    delete env.NODE_EXTRA_CA_CERTS
    if (caCert) {
      const caFile = path.join(dir, 'test-ca.pem')
      await fsp.writeFile(caFile, caCert)
      env.NODE_EXTRA_CA_CERTS = caFile
    }
    child = spawn(process.execPath, [path.join(versionDir, 'bin', 'haraka'), '-c', dir], {
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
              process.kill(child.pid, 'SIGTERM')
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
async function sendMail({ port, from = 'sender@haraka.test', to, subject = 'test', text = 'hello' }) {
  const nodemailer = require('nodemailer')
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: true,
    name: 'client.test',
    connectionTimeout: 10000,
    greetingTimeout: 10000,
    socketTimeout: 30000,
  })
  try {
    return await transport.sendMail({ from, to, subject, text })
  } finally {
    transport.close()
  }
}

/**
 * Waits for the first outbound outcome Haraka logs after the offset `from` (default: the log
 * length at the time of the call; take `haraka.logLength()` BEFORE sendMail to avoid a race).
 * `uuid` (see queuedUuid) restricts it to one submitted message, so that e.g. a bounce DSN of
 * an earlier message is not taken for the outcome of this one.
 * @param {object} haraka  a startHaraka() handle
 * @param {number} [timeoutMs]
 * @param {{from?: number, uuid?: string}} [opts]
 * @returns {Promise<{kind: 'delivered'|'deferred'|'bounced', line: string, offset: number,
 *   host?: string, ip?: string, port?: number, delay?: number, err?: string}>}
 */
async function waitForOutcome(haraka, timeoutMs = 60000, { from = haraka.logLength(), uuid } = {}) {
  const m = await haraka.waitForLog(outcomeRe(uuid), timeoutMs, { from })
  const line = m[0]
  if (m[1]) return { kind: 'delivered', line, offset: m.offset, host: m[2], ip: m[3], port: Number(m[4]) }
  if (m[5]) return { kind: 'deferred', line, offset: m.offset, delay: Number(m[6]), err: m[7] }
  return { kind: 'bounced', line, offset: m.offset, err: m[8] }
}

module.exports = {
  HARAKA_VERSIONS,
  OUTCOME_RE,
  outcomeRe,
  queuedUuid,
  makeTestCa,
  startSink,
  startBlackHole,
  startHaraka,
  sendMail,
  waitForOutcome,
  freePort,
}
