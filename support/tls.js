'use strict'

// Throwaway TLS material for STARTTLS sinks, made with the openssl CLI in temp dirs that are
// removed at once; the PEM text stays in memory.

const { execFile } = require('node:child_process')
const fsp = require('node:fs/promises')
const os = require('node:os')
const path = require('node:path')

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

/** Runs the openssl CLI in `cwd`; rejects with its stderr. */
function openssl(args, cwd) {
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/openssl', args, { cwd, timeout: 20000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`openssl ${args[0]} failed: ${err.message} ${stderr}`)) : resolve(),
    )
  })
}

/** Runs fn(dir) in a fresh temp dir that is removed afterwards. */
async function inTempDir(prefix, fn) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix))
  try {
    return await fn(dir)
  } finally {
    await fsp.rm(dir, { recursive: true, force: true })
  }
}

let selfSigned = null

/**
 * A self-signed key/cert pair for sink.test, made once per process.
 * @returns {Promise<{key: string, cert: string}>}
 */
function selfSignedCert() {
  if (!selfSigned) {
    selfSigned = inTempDir('he-e2e-tls-', async (dir) => {
      const args = ['req', '-x509', ...EC_KEY, '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '2']
      await openssl([...args, '-subj', '/CN=sink.test'], dir)
      return {
        key: await fsp.readFile(path.join(dir, 'key.pem'), 'utf8'),
        cert: await fsp.readFile(path.join(dir, 'cert.pem'), 'utf8'),
      }
    })
    selfSigned.catch(() => (selfSigned = null))
  }
  return selfSigned
}

/**
 * A throwaway certificate authority and one CA-signed leaf certificate per host name (subject
 * alternative name DNS:<name>). Trust the CA in a Haraka process with startHaraka's `caCert`.
 * @param {string[]} names
 * @returns {Promise<{caCert: string, leaf: Object<string, {key: string, cert: string}>}>}
 */
function makeTestCa(names) {
  return inTempDir('he-e2e-ca-', async (dir) => {
    await openssl(
      [
        'req',
        '-x509',
        ...EC_KEY,
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
        ['req', '-new', ...EC_KEY, '-keyout', `${i}.key`, '-out', `${i}.csr`, '-subj', `/CN=${name}`],
        dir,
      )
      await fsp.writeFile(
        path.join(dir, `${i}.ext`),
        `subjectAltName=DNS:${name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`,
      )
      await openssl(
        ['x509', '-req', '-in', `${i}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'].concat([
          '-days',
          '2',
          '-extfile',
          `${i}.ext`,
          '-out',
          `${i}.pem`,
        ]),
        dir,
      )
      leaf[name] = {
        key: await fsp.readFile(path.join(dir, `${i}.key`), 'utf8'),
        cert: await fsp.readFile(path.join(dir, `${i}.pem`), 'utf8'),
      }
    }
    return { caCert: await fsp.readFile(path.join(dir, 'ca.pem'), 'utf8'), leaf }
  })
}

module.exports = { selfSignedCert, makeTestCa }
