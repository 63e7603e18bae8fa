'use strict'

// The plugin as a user gets it: `npm pack` of the checkout, installed into a temp prefix
// with npm, once per process. Haraka dirs then link node_modules/haraka-plugin-happy-eyeballs
// to that installed copy, so the e2e tests also check that package.json `files` ships what
// Haraka loads (dist/, config/) and that the runtime dependencies are declared.
//
// The install must work with no network at all: CI runs the tests in a network namespace
// with only loopback. `npm install <tgz>` would fetch each dependency's registry metadata,
// which `npm ci` never stored in the cache; a lockfile for the prefix, cut from the repo's
// own package-lock.json (the same versions the checkout is tested with), lets
// `npm ci --offline` take every tarball from the npm cache instead.

const { execFile } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const fsp = require('node:fs/promises')
const os = require('node:os')
const path = require('node:path')

const REPO_ROOT = path.resolve(__dirname, '..')
const NAME = require(path.join(REPO_ROOT, 'package.json')).name

/** Upper bound for one npm command. */
const NPM_TIMEOUT_MS = 120000

function npm(args, cwd) {
  return new Promise((resolve, reject) => {
    execFile(
      'npm',
      args,
      {
        cwd,
        timeout: NPM_TIMEOUT_MS,
        env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false' },
      },
      (err, stdout, stderr) =>
        err ? reject(new Error(`npm ${args.join(' ')} failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    )
  })
}

/**
 * The lockfile entries of `deps` and everything they need, found the way Node resolves:
 * `<from>/node_modules/<dep>`, then each parent's node_modules, up to the top.
 * @param {Object<string, object>} packages  package-lock.json `packages`
 * @param {Object<string, string>} deps
 */
function dependencyClosure(packages, deps) {
  const out = {}
  const visit = (from, name, optional) => {
    let dir = from
    for (;;) {
      const key = `${dir ? `${dir}/` : ''}node_modules/${name}`
      if (packages[key]) {
        if (out[key]) return
        out[key] = packages[key]
        const p = packages[key]
        for (const d of Object.keys(p.dependencies || {})) visit(key, d, false)
        for (const d of Object.keys(p.optionalDependencies || {})) visit(key, d, true)
        return
      }
      if (!dir) break
      dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : ''
    }
    if (!optional)
      throw new Error(`package-lock.json has no entry for ${name} (needed by ${from || 'the plugin'})`)
  }
  for (const name of Object.keys(deps)) visit('', name, false)
  return out
}

async function packAndInstall() {
  const started = performance.now()
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'he-e2e-package-'))
  try {
    // The suite builds dist/ before it runs (pretest); `prepare` would build it again.
    const packed = JSON.parse(
      await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], REPO_ROOT),
    )
    const tgz = packed[0].filename
    const pkg = require(path.join(REPO_ROOT, 'package.json'))
    const lock = require(path.join(REPO_ROOT, 'package-lock.json'))
    const deps = pkg.dependencies || {}
    const integrity = `sha512-${crypto
      .createHash('sha512')
      .update(await fsp.readFile(path.join(dir, tgz)))
      .digest('base64')}`
    const prefix = path.join(dir, 'prefix')
    await fsp.mkdir(prefix)
    await fsp.rename(path.join(dir, tgz), path.join(prefix, tgz))
    const manifest = { name: 'he-e2e-install', private: true, dependencies: { [NAME]: `file:${tgz}` } }
    const prefixLock = {
      name: manifest.name,
      lockfileVersion: 3,
      requires: true,
      packages: {
        '': { name: manifest.name, dependencies: manifest.dependencies },
        [`node_modules/${NAME}`]: {
          version: pkg.version,
          resolved: `file:${tgz}`,
          integrity,
          license: pkg.license,
          dependencies: deps,
        },
        ...dependencyClosure(lock.packages, deps),
      },
    }
    await fsp.writeFile(path.join(prefix, 'package.json'), JSON.stringify(manifest, null, 2))
    await fsp.writeFile(path.join(prefix, 'package-lock.json'), JSON.stringify(prefixLock, null, 2))
    await npm(['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--omit=dev'], prefix)
    const installed = path.join(prefix, 'node_modules', NAME)
    for (const must of ['package.json', pkg.main]) {
      if (!fs.existsSync(path.join(installed, must))) throw new Error(`the packed plugin has no ${must}`)
    }
    return { dir, installed, tarball: tgz, ms: performance.now() - started }
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true })
    throw err
  }
}

let installing = null

/**
 * The plugin packed and installed, made on the first call of the process and shared by every
 * later one; the temp dir goes when the process exits.
 * @returns {Promise<{dir: string, installed: string, tarball: string, ms: number}>}
 */
function installedPlugin() {
  if (!installing) {
    installing = packAndInstall()
    installing.then(
      ({ dir }) => process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true })),
      () => {
        installing = null
      },
    )
  }
  return installing
}

module.exports = { REPO_ROOT, PLUGIN_NAME: NAME, installedPlugin, dependencyClosure }
