import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'

import { parseSettings, defaultSettings, isDnsServer, type RawIni, type Settings } from '../lib/config'
import { OPTIONS, getField, type Option } from '../lib/options'
import { RANGE_ALIASES, type RangeName } from '../lib/classify'

import { classify } from './support/classification'

const SHIPPED_INI = path.join(__dirname, '..', 'config', 'happy_eyeballs.ini')

// Just enough of Haraka's ini format: [section], key=value, key[]=value, ; and # comments,
// keys above the first section in `main`, whole numbers as numbers. Null-prototype objects,
// as haraka-config builds them.
type IniValue = string | number
type IniSection = Record<string, IniValue | IniValue[]>

function readIni(text: string): Record<string, IniSection> {
  const ini: Record<string, IniSection> = Object.create(null)
  ini.main = Object.create(null)
  let section = ini.main
  for (const raw of text.split(/\r\n|\r|\n/)) {
    const line = raw.trim()
    if (!line || line.startsWith(';') || line.startsWith('#')) continue
    const sect = /^\[([^\]]*)\]$/.exec(line)
    if (sect) {
      const name = sect[1].trim()
      if (!Object.prototype.hasOwnProperty.call(ini, name)) ini[name] = Object.create(null)
      section = ini[name]
      continue
    }
    const m = /^([^=]+?)\s*(?:=\s*(.*))?$/.exec(line)
    if (!m) continue
    const value = m[2] === undefined ? '' : /^-?\d+$/.test(m[2]) ? parseInt(m[2], 10) : m[2]
    if (m[1].endsWith('[]')) {
      const key = m[1].slice(0, -2)
      const list = section[key]
      if (Array.isArray(list)) list.push(value)
      else section[key] = [value]
    } else {
      section[m[1]] = value
    }
  }
  return ini
}

// The settings as plain data, so Sets and parsed CIDRs compare by content.
/** Settings with the filter policy as texts: what parse() hands the assertions. */
type PlainSettings = Omit<Settings, 'filter'> & {
  filter: {
    allFiltered: Settings['filter']['allFiltered']
    allow: string[]
    blockCidrs: string[]
    blockRanges: RangeName[]
  }
}

function plain(settings: Settings): PlainSettings {
  const p = settings.filter.policy
  return {
    ...settings,
    filter: {
      allFiltered: settings.filter.allFiltered,
      allow: p.allow.map((c) => c.text),
      blockCidrs: p.blockCidrs.map((c) => c.text),
      blockRanges: [...p.blockRanges].sort(),
    },
  }
}

const DEFAULTS = plain(defaultSettings())

const option = (section: string, key: string): Option => {
  const o = OPTIONS.find((r) => r.section === section && r.key === key)
  assert.ok(o, `no option [${section}] ${key}`)
  return o
}

/** The default as a problem line shows it after "using". */
function shownDefault(o: Option): string {
  if (o.type === 'dns-servers') return '"the system resolvers"'
  if (o.type === 'address') return '"no bind"'
  return JSON.stringify('default' in o ? o.default : undefined)
}

/** One raw ini with `value` for every key of the table (lists of entries left out unless `lists`). */
function everyKey(value: unknown, { lists = true } = {}): Record<string, Record<string, unknown>> {
  const raw: Record<string, Record<string, unknown>> = {}
  for (const o of OPTIONS) {
    if (!lists && (o.type === 'cidr-list' || o.type === 'block-list' || o.type === 'pattern-list')) continue
    // Any string is good text: no value is bad for every key at once.
    if (!lists && o.type === 'text') continue
    raw[o.section] = { ...raw[o.section], [o.key]: value }
  }
  return raw
}

// raw is anything a config file could hold, bad shapes too: parseSettings must take them all.
function parse(raw: unknown): { settings: PlainSettings; problems: string[] } {
  let result: ReturnType<typeof parseSettings> | undefined
  assert.doesNotThrow(
    () => {
      result = parseSettings(raw as RawIni)
    },
    `parseSettings(${String(JSON.stringify(raw)).slice(0, 80)}) threw`,
  )
  // doesNotThrow has run the callback, or failed the test.
  const { settings, problems } = result as ReturnType<typeof parseSettings>
  return { settings: plain(settings), problems }
}

describe('config', () => {
  describe('defaults', () => {
    it("defaultSettings holds each option's default from the table at its field", () => {
      const settings = defaultSettings()
      for (const o of OPTIONS) {
        const where = `[${o.section}] ${o.key} at ${o.field}`
        const value = getField(settings, o.field)
        if (o.type === 'address' || o.type === 'listen') assert.equal(value, undefined, where)
        else if (o.type === 'dns-servers' || o.type === 'cidr-list' || o.type === 'pattern-list')
          assert.deepEqual(value, [], where)
        else if (o.type === 'block-list') {
          assert.deepEqual(value, [], where)
          assert.deepEqual(getField(settings, o.rangesField), new Set(), where)
        } else if (o.type === 'text') assert.equal(value, 'default' in o ? o.default : undefined, where)
        else assert.equal(value, o.default, where)
      }
      assert.deepEqual(settings.bind, {}, 'no bind address by default, and no key for one')
    })

    it('defaultSettings returns a fresh object each call, so callers cannot change the defaults', () => {
      const a = defaultSettings()
      a.dns.servers.push('192.0.2.53')
      // A caller that mutates its copy anyway (the type says read-only) must not change the next one.
      ;(a.filter.policy.blockRanges as Set<RangeName>).add('private')
      assert.deepEqual(plain(defaultSettings()), DEFAULTS)
    })

    it('undefined gives the defaults and no problems', () => {
      assert.deepEqual(parse(undefined), { settings: DEFAULTS, problems: [] })
    })

    it('null gives the defaults and no problems', () => {
      assert.deepEqual(parse(null), { settings: DEFAULTS, problems: [] })
    })

    it('{} gives the defaults and no problems', () => {
      assert.deepEqual(parse({}), { settings: DEFAULTS, problems: [] })
    })

    it('a non-object (string, number) gives the defaults', () => {
      for (const raw of ['port=26', 42, true]) assert.deepEqual(parse(raw).settings, DEFAULTS)
    })

    it('the shipped config/happy_eyeballs.ini parses to exactly the defaults with no problems', () => {
      const raw = readIni(fs.readFileSync(SHIPPED_INI, 'utf8'))
      assert.deepEqual(Object.keys(raw).sort(), [
        'bind',
        'cache',
        'dns',
        'egress',
        'family',
        'filter',
        'main',
        'metrics',
        'policy',
        'race',
        'redis',
        'watch',
      ])
      assert.deepEqual(parse(raw), { settings: DEFAULTS, problems: [] })
    })

    it('every default named in a comment of the shipped ini is the default in force', () => {
      // Comments read `; key=value: why`; the value shown must be what parseSettings uses.
      const text = fs.readFileSync(SHIPPED_INI, 'utf8')
      const documented: Array<[string, string, string]> = []
      let section = 'main'
      for (const line of text.split('\n')) {
        const s = /^\[(\w+)\]/.exec(line)
        if (s) section = s[1]
        // The value ends at the first `: ` (a prefix such as `happy-eyeballs:` holds a colon).
        const m = /^; (\w+)=(\S*?): /.exec(line)
        if (m && m[2] !== '') documented.push([section, m[1], m[2]])
      }
      assert.ok(documented.length >= 13, `found ${documented.length} documented defaults`)
      for (const [section, key, value] of documented) {
        const { settings, problems } = parse({ [section]: { [key]: value } })
        assert.deepEqual(problems, [], `[${section}] ${key}=${value}`)
        assert.deepEqual(settings, DEFAULTS, `[${section}] ${key}=${value}`)
      }
    })

    it('blank values (empty, white space, null) keep the default without a complaint', () => {
      for (const blank of ['', '   ', null, undefined]) {
        const raw = everyKey(blank)
        assert.deepEqual(parse(raw), { settings: DEFAULTS, problems: [] }, JSON.stringify(blank))
      }
    })
  })

  describe('a bad value keeps the default and is reported with its key and the default', () => {
    const junk = '\u0000\u00ff\ufffd\u0007\u001b[31m\ud800'
    // [section, key, bad value]: the default the problem line shows comes from the table
    const table: Array<[string, string, unknown]> = [
      ['main', 'enabled', 'banana'],
      ['main', 'enabled', 2],
      ['main', 'enabled', 'truee'],
      ['main', 'enabled', ['true', 'false']],
      ['main', 'enabled', {}],
      ['main', 'prefer', 'ipv5'],
      ['main', 'prefer', 'both'],
      ['main', 'prefer', true],
      ['main', 'prefer', ['ipv4', 'ipv6']],
      ['main', 'first_family_count', 0],
      ['main', 'first_family_count', '17'],
      ['main', 'first_family_count', '1.5'],
      ['main', 'port', -1],
      ['main', 'port', '-1'],
      ['main', 'port', 0],
      ['main', 'port', 65536],
      ['main', 'port', '99999999999999999999'],
      ['main', 'port', 25.5],
      ['main', 'port', '25.0'],
      ['main', 'port', 'NaN'],
      ['main', 'port', NaN],
      ['main', 'port', Infinity],
      ['main', 'port', '1e3'],
      ['main', 'port', '0x19'],
      ['main', 'port', '+25'],
      ['main', 'port', 'smtp'],
      ['main', 'port', true],
      ['main', 'port', ['25', '587']],
      ['main', 'port', { value: 25 }],
      ['main', 'port', junk],
      ['main', 'port', Buffer.from([0, 0xff, 0x19])],
      ['main', 'max_addresses', 1],
      ['main', 'max_addresses', 257],
      ['main', 'max_addresses', '9007199254740993'],
      ['main', 'max_addresses', '1'.repeat(400)],
      ['dns', 'servers', 'dns.example.com'],
      ['dns', 'servers', '192.0.2.53, resolver.example'],
      ['dns', 'servers', '192.0.2.53:0'],
      ['dns', 'servers', '192.0.2.53:65536'],
      ['dns', 'servers', '192.0.2.53:dns'],
      ['dns', 'servers', '[2001:db8::53]'],
      ['dns', 'servers', '[2001:db8::53]:99999'],
      ['dns', 'servers', '192.0.2.0/24'],
      ['dns', 'servers', true],
      ['dns', 'servers', {}],
      ['dns', 'timeout_ms', 99],
      ['dns', 'timeout_ms', 30001],
      ['dns', 'timeout_ms', '5s'],
      ['filter', 'all_filtered', 'drop'],
      ['filter', 'all_filtered', 'reject'],
      ['filter', 'all_filtered', 1],
      ['bind', 'ipv4', '2001:db8::25'],
      ['bind', 'ipv6', '192.0.2.25'],
      ['bind', 'ipv4', 'mail.example.com'],
      ['bind', 'ipv6', '[2001:db8::25]'],
      ['bind', 'ipv4', '192.0.2.0/24'],
      ['bind', 'ipv4', ['192.0.2.25', '192.0.2.26']],
      ['race', 'enabled', 'banana'],
      ['race', 'enabled', 'maybe'],
      ['race', 'attempt_delay_ms', 9],
      ['race', 'attempt_delay_ms', 2001],
      ['race', 'attempt_delay_ms', '250ms'],
      ['race', 'group_delay_ms', -5],
      ['race', 'group_delay_ms', 30001],
      ['race', 'deadline_ms', 99],
      ['race', 'deadline_ms', 1000000],
      ['race', 'deadline_ms', '15000.5'],
      ['cache', 'ttl_s', -1],
      ['cache', 'ttl_s', 86401],
      ['cache', 'ttl_s', '10m'],
      ['cache', 'max_entries', 9],
      ['cache', 'max_entries', 1000001],
      ['cache', 'max_entries', 'lots'],
    ]
    for (const [section, key, value] of table) {
      const label = value instanceof Buffer ? 'a Buffer of binary junk' : String(JSON.stringify(value))
      const shown = shownDefault(option(section, key))
      it(`[${section}] ${key}=${label} keeps the default ${shown} and reports it`, () => {
        const { settings, problems } = parse({ [section]: { [key]: value } })
        assert.deepEqual(settings, DEFAULTS)
        assert.equal(problems.length, 1, problems.join('\n'))
        const line = problems[0]
        assert.ok(line.startsWith(`[${section}] ${key}=`), line)
        assert.ok(line.endsWith(`; using ${shown}`), line)
      })
    }

    it('one bad key does not disturb the good keys next to it', () => {
      const { settings, problems } = parse({
        main: { port: 'banana', prefer: 'ipv4', max_addresses: 8 },
        race: { attempt_delay_ms: 1, deadline_ms: 9000 },
      })
      assert.equal(settings.port, DEFAULTS.port)
      assert.equal(settings.prefer, 'ipv4')
      assert.equal(settings.maxAddresses, 8)
      assert.equal(settings.race.attemptDelayMs, DEFAULTS.race.attemptDelayMs)
      assert.equal(settings.race.deadlineMs, 9000)
      assert.equal(problems.length, 2)
      assert.ok(problems.some((p) => p.startsWith('[main] port=')))
      assert.ok(problems.some((p) => p.startsWith('[race] attempt_delay_ms=')))
    })

    it('every key bad at once: all defaults, one problem line per key', () => {
      const raw = everyKey('x', { lists: false })
      const { settings, problems } = parse(raw)
      assert.deepEqual(settings, DEFAULTS)
      const named = Object.entries(raw).flatMap(([s, keys]) => Object.keys(keys).map((k) => `[${s}] ${k}=`))
      assert.equal(problems.length, named.length)
      for (const n of named)
        assert.ok(
          problems.some((p) => p.startsWith(n)),
          n,
        )
    })
  })

  describe('bad allow and block entries are reported by name and ignored, good ones kept', () => {
    const badAllow = ['10.0.0.0/33', '::/129', 'abc/8', '10.0.0.0/x', 'private', '1.2.3', 'localhost']
    for (const entry of badAllow) {
      it(`allow entry ${entry} is not a CIDR: reported under [filter] allow and ignored`, () => {
        const { settings, problems } = parse({ filter: { allow: ['10.1.0.0/16', entry] } })
        assert.deepEqual(settings.filter.allow, ['10.1.0.0/16'])
        assert.deepEqual(problems, [`[filter] allow entry ${JSON.stringify(entry)} is not a CIDR; ignored`])
      })
    }

    const badBlock = ['no-such-range', 'Private', 'unicast', '2001:db8::/129', 'abc/8', 'link_local']
    for (const entry of badBlock) {
      it(`block entry ${entry} is neither a CIDR nor a range name: reported under [filter] block and ignored`, () => {
        const { settings, problems } = parse({ filter: { block: ['192.0.2.0/24', entry, 'teredo'] } })
        assert.deepEqual(settings.filter.blockCidrs, ['192.0.2.0/24'])
        assert.deepEqual(settings.filter.blockRanges, ['teredo'])
        assert.deepEqual(problems, [
          `[filter] block entry ${JSON.stringify(entry)} is neither a CIDR nor a range name; ignored`,
        ])
      })
    }

    it('allow entries that are not text are reported and ignored', () => {
      const { settings, problems } = parse({ filter: { allow: [3, true] } })
      assert.deepEqual(settings.filter.allow, [])
      assert.equal(problems.length, 2)
      for (const p of problems) assert.ok(p.startsWith('[filter] allow entry '), p)
    })
  })

  describe('unknown sections and keys are reported and ignored', () => {
    it('an unknown section is reported by name and changes nothing', () => {
      const { settings, problems } = parse({ mian: { port: 26 } })
      assert.deepEqual(settings, DEFAULTS)
      assert.deepEqual(problems, ['unknown section [mian] ignored'])
    })

    it('an unknown key is reported with its section and changes nothing', () => {
      const { settings, problems } = parse({ main: { prot: 26 }, race: { delay_ms: 100 } })
      assert.deepEqual(settings, DEFAULTS)
      assert.deepEqual(problems.sort(), [
        'unknown key [main] prot ignored',
        'unknown key [race] delay_ms ignored',
      ])
    })

    it('a key in the wrong section is reported and not applied', () => {
      const { settings, problems } = parse({ main: { timeout_ms: 1000 } })
      assert.deepEqual(settings, DEFAULTS)
      assert.deepEqual(problems, ['unknown key [main] timeout_ms ignored'])
    })

    it('a stray top-level scalar is an unknown section', () => {
      const { settings, problems } = parse({ port: 26 })
      assert.deepEqual(settings, DEFAULTS)
      assert.deepEqual(problems, ['unknown section [port] ignored'])
    })

    // Object.prototype member names are not sections. haraka-config's ini reader keeps a
    // `[toString]` section (it drops only __proto__, constructor and prototype), and a
    // happy_eyeballs.json read with JSON.parse has any of them as own properties.
    it('an ini section named [toString] is reported as unknown, and parseSettings does not throw', () => {
      const { settings, problems } = parse(readIni('[toString]\nx=1\n[main]\nport=26\n'))
      assert.equal(settings.port, 26)
      assert.deepEqual(problems, ['unknown section [toString] ignored'])
    })

    it('sections named after Object.prototype members (from JSON) are reported as unknown, never thrown on', () => {
      for (const name of ['valueOf', 'hasOwnProperty', 'isPrototypeOf', 'constructor', '__proto__']) {
        const raw = JSON.parse(`{"${name}": {"port": 1}, "main": {"port": 26}}`)
        const { settings, problems } = parse(raw)
        assert.equal(settings.port, 26, name)
        assert.deepEqual(problems, [`unknown section [${name}] ignored`], name)
      }
      assert.equal(({} as { port?: unknown }).port, undefined)
    })

    it('a key named like an Object.prototype member is an unknown key', () => {
      const { settings, problems } = parse({ main: { constructor: '1', toString: 'x' } })
      assert.deepEqual(settings, DEFAULTS)
      assert.deepEqual(problems.sort(), [
        'unknown key [main] constructor ignored',
        'unknown key [main] toString ignored',
      ])
    })
  })

  describe('malformed sections', () => {
    it('null section values keep every default and do not throw', () => {
      const raw = { main: null, dns: null, filter: null, bind: null, race: null, cache: null }
      assert.deepEqual(parse(raw).settings, DEFAULTS)
    })

    it('a section that is an array keeps the defaults', () => {
      const { settings } = parse({ main: ['port=26'], race: [] })
      assert.deepEqual(settings, DEFAULTS)
    })

    it('a section given as a scalar (e.g. from happy_eyeballs.json) is reported, not silently dropped', () => {
      const { settings, problems } = parse({ race: 'fast', main: { port: 26 } })
      assert.equal(settings.port, 26)
      assert.deepEqual(settings.race, DEFAULTS.race)
      assert.ok(
        problems.some((p) => p.includes('[race]')),
        `problems ${JSON.stringify(problems)} do not mention [race]`,
      )
    })
  })

  describe('good values are taken', () => {
    const booleans = [
      ['yes', true],
      ['Yes', true],
      ['on', true],
      ['true', true],
      ['1', true],
      [1, true],
      [true, true],
      ['off', false],
      ['OFF', false],
      ['no', false],
      ['false', false],
      ['0', false],
      [0, false],
      [false, false],
      [' off ', false],
    ]
    for (const [value, expected] of booleans) {
      it(`[main] enabled=${JSON.stringify(value)} is ${expected}`, () => {
        const { settings, problems } = parse({ main: { enabled: value } })
        assert.equal(settings.enabled, expected)
        assert.deepEqual(problems, [])
      })
      it(`[race] enabled=${JSON.stringify(value)} is ${expected}`, () => {
        const { settings, problems } = parse({ race: { enabled: value } })
        assert.equal(settings.race.enabled, expected)
        assert.deepEqual(problems, [])
      })
    }

    it('prefer is case-insensitive', () => {
      assert.equal(parse({ main: { prefer: 'IPv4' } }).settings.prefer, 'ipv4')
      assert.equal(parse({ main: { prefer: 'ipv4' } }).settings.prefer, 'ipv4')
      assert.equal(parse({ main: { prefer: ' IPV6 ' } }).settings.prefer, 'ipv6')
    })

    it('whole numbers are taken as numbers or text, with surrounding space', () => {
      assert.equal(parse({ main: { port: 587 } }).settings.port, 587)
      assert.equal(parse({ main: { port: '587' } }).settings.port, 587)
      assert.equal(parse({ main: { port: ' 2525 ' } }).settings.port, 2525)
    })

    // The whole-number fields lie outside filter, where PlainSettings and Settings agree.
    const ranges = OPTIONS.filter((o) => o.type === 'integer').map(
      (o): [string, string, (s: PlainSettings) => number | undefined, number, number] => [
        o.section,
        o.key,
        (s) => getField(s as unknown as Settings, o.field),
        o.min,
        o.max,
      ],
    )
    it('the whole-number options are the twenty-two of the table', () => assert.equal(ranges.length, 22))
    for (const [section, key, get, min, max] of ranges) {
      it(`[${section}] ${key} takes both ends of its range, ${min} and ${max}, and rejects one past each`, () => {
        for (const v of [min, max]) {
          const { settings, problems } = parse({ [section]: { [key]: v } })
          assert.equal(get(settings), v)
          assert.deepEqual(problems, [])
        }
        for (const v of [min - 1, max + 1]) {
          const { settings, problems } = parse({ [section]: { [key]: v } })
          assert.equal(get(settings), get(DEFAULTS))
          assert.equal(problems.length, 1)
        }
      })
    }

    it('allow[] as an array is taken', () => {
      const { settings, problems } = parse({ filter: { allow: ['10.1.2.0/24', 'fd00:1::/64', '127.0.0.1'] } })
      assert.deepEqual(settings.filter.allow, ['10.1.2.0/24', 'fd00:1::/64', '127.0.0.1'])
      assert.deepEqual(problems, [])
    })

    it('allow as a comma separated string is taken', () => {
      const { settings, problems } = parse({ filter: { allow: '10.1.2.0/24, fd00:1::/64,127.0.0.0/8' } })
      assert.deepEqual(settings.filter.allow, ['10.1.2.0/24', 'fd00:1::/64', '127.0.0.0/8'])
      assert.deepEqual(problems, [])
    })

    it('allow entries are lower-cased', () => {
      assert.deepEqual(parse({ filter: { allow: 'FD00:1::/64' } }).settings.filter.allow, ['fd00:1::/64'])
    })

    it('block takes CIDRs and range names from an array, ipaddr.js names as their kebab-case names', () => {
      const { settings, problems } = parse({
        filter: {
          block: ['192.0.2.0/24', '2001:db8::/32', 'link-local', 'teredo', 'rfc6052', 'uniqueLocal'],
        },
      })
      assert.deepEqual(settings.filter.blockCidrs, ['192.0.2.0/24', '2001:db8::/32'])
      assert.deepEqual(settings.filter.blockRanges, ['link-local', 'nat64', 'teredo', 'unique-local'])
      assert.deepEqual(problems, [])
    })

    it('every ipaddr.js alias in block is taken silently as the name of ours it stands for', () => {
      assert.ok(RANGE_ALIASES.size >= 10)
      for (const [alias, name] of RANGE_ALIASES) {
        assert.deepEqual(parse({ filter: { block: alias } }), parse({ filter: { block: name } }), alias)
        assert.deepEqual(parse({ filter: { block: alias } }).problems, [], alias)
      }
    })

    it('an alias and its kebab-case name together are one range name', () => {
      const { settings } = parse({ filter: { block: 'carrierGradeNat, cgn, linkLocal' } })
      assert.deepEqual(settings.filter.blockRanges, ['cgn', 'link-local'])
    })

    it('an alias blocks like its name: the reason shows the kebab-case name', () => {
      const { settings } = parseSettings({ filter: { allow: 'fd00::/8', block: 'uniqueLocal' } })
      assert.equal(classify('fd00::1', settings.filter.policy).reason, 'blocked by unique-local')
    })

    it('block takes a comma separated string', () => {
      const { settings } = parse({ filter: { block: 'private, 198.51.100.0/24' } })
      assert.deepEqual(settings.filter.blockCidrs, ['198.51.100.0/24'])
      assert.deepEqual(settings.filter.blockRanges, ['private'])
    })

    it('the parsed allow and block lists form a policy classify can use', () => {
      const { settings } = parseSettings({ filter: { allow: '10.0.0.0/8', block: '10.9.0.0/16, cgn' } })
      const policy = settings.filter.policy
      assert.equal(classify('10.1.2.3', policy).allowedBy, '10.0.0.0/8')
      assert.equal(classify('10.9.0.1', policy).reason, 'blocked by 10.9.0.0/16')
      assert.equal(classify('100.64.0.1', policy).reason, 'blocked by cgn')
    })

    it('all_filtered=bounce is taken, case-insensitively', () => {
      assert.equal(parse({ filter: { all_filtered: 'bounce' } }).settings.filter.allFiltered, 'bounce')
      assert.equal(parse({ filter: { all_filtered: 'BOUNCE' } }).settings.filter.allFiltered, 'bounce')
    })

    it("servers '127.0.0.1:5353, [::1]:53' is taken as two resolvers", () => {
      const { settings, problems } = parse({ dns: { servers: '127.0.0.1:5353, [::1]:53' } })
      assert.deepEqual(settings.dns.servers, ['127.0.0.1:5353', '[::1]:53'])
      assert.deepEqual(problems, [])
    })

    it('servers[] as an array of bare addresses is taken', () => {
      const { settings, problems } = parse({ dns: { servers: ['192.0.2.53', '2001:db8::53'] } })
      assert.deepEqual(settings.dns.servers, ['192.0.2.53', '2001:db8::53'])
      assert.deepEqual(problems, [])
    })

    it('one bad server rejects the whole list, so no half list of resolvers is used', () => {
      const { settings, problems } = parse({ dns: { servers: '192.0.2.53, ns.example.com' } })
      assert.deepEqual(settings.dns.servers, [])
      assert.equal(problems.length, 1)
    })

    it('bind takes an address of the right family for each family', () => {
      const { settings, problems } = parse({ bind: { ipv4: '192.0.2.25', ipv6: '2001:db8::25' } })
      assert.deepEqual(settings.bind, { ipv4: '192.0.2.25', ipv6: '2001:db8::25' })
      assert.deepEqual(problems, [])
    })

    it('a bad bind for one family leaves the other family bound', () => {
      const { settings, problems } = parse({ bind: { ipv4: '2001:db8::25', ipv6: '2001:db8::26' } })
      assert.deepEqual(settings.bind, { ipv6: '2001:db8::26' })
      assert.equal(problems.length, 1)
      assert.ok(problems[0].startsWith('[bind] ipv4='))
    })

    it('a full valid ini is taken with no problems', () => {
      const raw = readIni(
        [
          '[main]',
          'enabled=yes',
          'prefer=ipv4',
          'first_family_count=2',
          'port=2525',
          'max_addresses=8',
          'connectivity_check_s=0',
          '[dns]',
          'servers=127.0.0.1:5353, [::1]:53',
          'timeout_ms=2000',
          '[filter]',
          'allow[]=10.1.2.0/24',
          'allow[]=fd00:1::/64',
          'block[]=192.0.2.0/24',
          'block[]=link-local',
          'all_filtered=bounce',
          '[bind]',
          'ipv4=192.0.2.25',
          'ipv6=2001:db8::25',
          '[race]',
          'enabled=off',
          'attempt_delay_ms=100',
          'min_attempt_delay_ms=20',
          'group_delay_ms=0',
          'deadline_ms=9000',
          '[cache]',
          'ttl_s=0',
          'max_entries=10',
          '[egress]',
          'ipv6_impaired_after=0',
          'window_s=60',
          'recheck_s=0',
          '[metrics]',
          'listen=[::1]:9464',
          '[watch]',
          'domains[]=example.org',
          'domains[]=Bücher.example',
          'interval_s=30',
          'concurrency=2',
          'timeout_ms=3000',
        ].join('\n'),
      )
      const { settings, problems } = parse(raw)
      assert.deepEqual(problems, [])
      assert.deepEqual(settings, {
        enabled: true,
        prefer: 'ipv4',
        firstFamilyCount: 2,
        port: 2525,
        maxAddresses: 8,
        connectivityCheckS: 0,
        dns: { servers: ['127.0.0.1:5353', '[::1]:53'], timeoutMs: 2000, resolutionDelayMs: 50 },
        filter: {
          allFiltered: 'bounce',
          allow: ['10.1.2.0/24', 'fd00:1::/64'],
          blockCidrs: ['192.0.2.0/24'],
          blockRanges: ['link-local'],
        },
        bind: { ipv4: '192.0.2.25', ipv6: '2001:db8::25' },
        race: {
          enabled: false,
          success: 'greeting',
          attemptDelayMs: 100,
          minAttemptDelayMs: 20,
          groupDelayMs: 0,
          deadlineMs: 9000,
        },
        cache: { ttlS: 0, maxEntries: 10 },
        egress: { ipv6ImpairedAfter: 0, windowS: 60, recheckS: 0 },
        family: DEFAULTS.family,
        policy: DEFAULTS.policy,
        metrics: { listen: '[::1]:9464' },
        watch: {
          domains: ['example.org', 'xn--bcher-kva.example'],
          intervalS: 30,
          concurrency: 2,
          timeoutMs: 3000,
        },
        redis: DEFAULTS.redis,
      })
    })

    it('watch domains: each bad entry is reported and dropped alone, a repeated one kept once', () => {
      const { settings, problems } = parse({
        watch: { domains: ['example.org', '*.example.com', '192.0.2.1', 'EXAMPLE.org.', 'a..b'] },
      })
      assert.deepEqual(settings.watch.domains, ['example.org'])
      assert.deepEqual(problems, [
        '[watch] domains entry "*.example.com" is not a domain; ignored',
        '[watch] domains entry "192.0.2.1" is not a domain; ignored',
        '[watch] domains entry "a..b" is not a domain; ignored',
      ])
    })

    it('[redis] text keys are trimmed; a section in their place is reported without showing a password', () => {
      const { settings, problems } = parse({
        redis: { enabled: 'on', host: ' 127.0.0.2 ', prefix: 'fleet1:', password: { secret: 1 } },
      })
      assert.equal(settings.redis.enabled, true)
      assert.equal(settings.redis.host, '127.0.0.2')
      assert.equal(settings.redis.prefix, 'fleet1:')
      assert.equal(settings.redis.password, undefined)
      assert.deepEqual(problems, ['[redis] password=(hidden) is not text; using "none"'])
    })

    it('metrics listen takes IPv4:port and [IPv6]:port, written back the same way', () => {
      for (const [text, shown] of [
        ['127.0.0.1:9464', '127.0.0.1:9464'],
        [' [::1]:9464 ', '[::1]:9464'],
        ['0.0.0.0:1', '0.0.0.0:1'],
        ['[::]:65535', '[::]:65535'],
      ]) {
        const { settings, problems } = parse({ metrics: { listen: text } })
        assert.deepEqual(problems, [], text)
        assert.equal(settings.metrics.listen, shown, text)
      }
    })
  })

  describe('metrics listen, bad values', () => {
    const bad = [
      '9464',
      '127.0.0.1',
      'localhost:9464',
      '127.0.0.1:0',
      '127.0.0.1:65536',
      '127.0.0.1:99999',
      '::1:9464',
      '[127.0.0.1]:9464',
      '[::1]',
      '127.0.0.1:94x4',
      'http://127.0.0.1:9464/metrics',
    ]
    for (const text of bad) {
      it(`${JSON.stringify(text)} is reported by name and leaves metrics off`, () => {
        const { settings, problems } = parse({ metrics: { listen: text } })
        assert.equal(settings.metrics.listen, undefined)
        assert.equal(problems.length, 1)
        assert.ok(
          problems[0].startsWith(`[metrics] listen=${JSON.stringify(text)} is not IP:port`),
          problems[0],
        )
        assert.match(problems[0], /using "no metrics"$/)
      })
    }
  })

  describe('isDnsServer', () => {
    const good = [
      '192.0.2.53',
      '192.0.2.53:53',
      '192.0.2.53:65535',
      '2001:db8::53',
      '[2001:db8::53]:53',
      '::1',
    ]
    const bad = [
      'ns.example.com',
      'ns.example.com:53',
      '192.0.2.53:0',
      '192.0.2.53:65536',
      '192.0.2.53:',
      '[2001:db8::53]',
      '[2001:db8::53]:',
      '2001:db8::53]:53',
      '[192.0.2.53]:53x',
      '',
    ]
    for (const s of good) it(`accepts ${s}`, () => assert.equal(isDnsServer(s), true))
    for (const s of bad) it(`rejects ${JSON.stringify(s)}`, () => assert.equal(isDnsServer(s), false))
  })
})
