// happy_eyeballs.ini read the way Haraka reads a packaged plugin's config, through
// haraka-config's public API: the package's config/ gives the defaults, the --config
// directory overrides them key by key. Read once: no watcher is left behind.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'

import type { RawIni } from '../config'
import { UsageError } from './args'

export const CONFIG_FILE = 'happy_eyeballs.ini'

/** The part of haraka-config the command uses. */
interface HarakaConfig {
  /** A config reading `<defaultsRoot>/config`, overridden by `<overridesRoot>/config`. */
  module_config(defaultsRoot: string, overridesRoot?: string): HarakaConfig
  get(name: string, type: 'ini', options: { no_watch: boolean }): unknown
  /** Closes the watchers on `<root>/config/<name>` and its directory. */
  stop_watching(name: string): void
}

/** The package root: dist/lib/cli/config.js → ../../.. (holds config/happy_eyeballs.ini). */
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..')

/**
 * The directory whose happy_eyeballs.ini overrides the defaults: the --config directory, or
 * the config/ inside it when it is a Haraka install directory. Undefined without a file.
 */
function overridesDir(configDir: string, warn: (msg: string) => void): string | undefined {
  const dir = path.resolve(configDir)
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory())
    throw new UsageError(`--config '${configDir}' is not a directory`)
  const nested = path.join(dir, 'config')
  const found = [dir, nested].find((d) => fs.existsSync(path.join(d, CONFIG_FILE)))
  if (!found) warn(`no ${CONFIG_FILE} in ${dir}: using the package defaults`)
  return found
}

/**
 * Runs fn without HARAKA_TEST_DIR: haraka-config's module_config would take that directory
 * for the defaults'. (HARAKA is not read by module_config.)
 */
function withoutTestDir<T>(fn: () => T): T {
  const saved = process.env.HARAKA_TEST_DIR
  delete process.env.HARAKA_TEST_DIR
  try {
    return fn()
  } finally {
    if (saved !== undefined) process.env.HARAKA_TEST_DIR = saved
  }
}

/**
 * Runs fn with a root whose config/ is dir, as module_config takes it: dir's parent when dir
 * is named config, else a private directory holding a `config` link to dir, removed after.
 */
function withRootOf<T>(dir: string, fn: (root: string) => T): T {
  if (path.basename(dir) === 'config') return fn(path.dirname(dir))
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'haraka-happy-eyeballs-'))
  const link = path.join(root, 'config')
  try {
    fs.symlinkSync(dir, link, 'junction')
    return fn(root)
  } finally {
    fs.rmSync(link, { force: true }) // the link only, never what it points to
    fs.rmdirSync(root)
  }
}

export function loadRawIni(configDir: string | undefined, warn: (msg: string) => void): RawIni {
  const overrides = configDir === undefined ? undefined : overridesDir(configDir, warn)
  // Loaded here, not at the top: haraka-config reads its own config dir on load.
  const harakaConfig = createRequire(__filename)('haraka-config') as HarakaConfig
  const read = (overridesRoot?: string): RawIni =>
    withoutTestDir(() => {
      const cfg = harakaConfig.module_config(PACKAGE_ROOT, overridesRoot)
      try {
        return cfg.get(CONFIG_FILE, 'ini', { no_watch: true }) as RawIni
      } finally {
        // On Linux haraka-config watches the directory of every file read, no_watch or not.
        harakaConfig.module_config(PACKAGE_ROOT).stop_watching(CONFIG_FILE)
        if (overridesRoot) harakaConfig.module_config(overridesRoot).stop_watching(CONFIG_FILE)
      }
    })
  return overrides === undefined ? read() : withRootOf(overrides, read)
}
