// The table of options in lib/options.ts, and the two documents that repeat it for operators:
// config/happy_eyeballs.ini and the README's configuration table.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import iniReader from 'haraka-config/lib/readers/ini'
import ts from 'typescript'

import {
  type BooleanOption,
  type ChoiceOption,
  type IntegerOption,
  OPTIONS,
  type Option,
  type SettingPath,
  getField,
} from '../lib/options'
import { defaultSettings, parseSettings } from '../lib/config'
import { RANGE_NAMES, RANGE_ALIASES } from '../lib/classify'

const ROOT = path.join(__dirname, '..')
const SHIPPED_INI = path.join(ROOT, 'config', 'happy_eyeballs.ini')
const README = path.join(ROOT, 'README.md')

const TYPES: readonly string[] = [
  'boolean',
  'integer',
  'choice',
  'dns-servers',
  'cidr-list',
  'block-list',
  'address',
  'pattern-list',
  'listen',
  'text',
]
const id = (o: Option): string => `[${o.section}] ${o.key}`
const isList = (o: Option): boolean =>
  o.type === 'cidr-list' || o.type === 'block-list' || o.type === 'pattern-list'
const fieldsOf = (o: Option): SettingPath[] =>
  o.type === 'block-list' ? [o.field, o.rangesField] : [o.field]
const hasDefault = (o: Option): o is BooleanOption | IntegerOption | ChoiceOption =>
  ['boolean', 'integer', 'choice'].includes(o.type)

/** Dotted paths of the leaves of a settings object; arrays and Sets are leaves. */
function leaves(value: object, prefix = ''): SettingPath[] {
  return Object.entries(value).flatMap(([k, v]) =>
    v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Set)
      ? leaves(v, `${prefix}${k}.`)
      : // read off a Settings object, so a path of one
        [`${prefix}${k}` as SettingPath],
  )
}

/**
 * How the documents write an option: its key, its value in the ini file, its README default,
 * and what its comment or README meaning must say about its range.
 */
function documented(o: Option): { key: string; iniValue: string; readmeDefault: string } {
  const key = isList(o) ? `${o.key}[]` : o.key
  const textDefault = o.type === 'text' ? o.default : undefined
  const iniValue = hasDefault(o) ? String(o.default) : (textDefault ?? '')
  const readmeDefault = hasDefault(o)
    ? `\`${o.default}\``
    : textDefault !== undefined
      ? `\`${textDefault}\``
      : o.type === 'dns-servers'
        ? '(system)'
        : '(none)'
  return { key, iniValue, readmeDefault }
}

/** Asserts that `text` (a comment or a README cell, backticks removed) states the range of `o`. */
function assertStatesRange(o: Option, text: string, where: string): void {
  const ranges = [...text.matchAll(/\((-?\d+)\.\.(-?\d+)/g)].map((m) => [Number(m[1]), Number(m[2])])
  if (o.type === 'integer') {
    assert.deepEqual(ranges, [[o.min, o.max]], `${where}: the range of ${id(o)} in ${JSON.stringify(text)}`)
    return
  }
  assert.deepEqual(ranges, [], `${where}: ${id(o)} is no number, yet ${JSON.stringify(text)} gives a range`)
  const words = ((): readonly string[] => {
    switch (o.type) {
      case 'boolean':
        return [String(!o.default)]
      case 'choice':
        return o.choices
      case 'dns-servers':
        return ['IP or IP:port']
      case 'cidr-list':
        return ['CIDR']
      case 'block-list':
        return ['CIDRs or range names']
      case 'address':
        return [`address for ${o.family === 'ipv4' ? 'IPv4' : 'IPv6'}`]
      case 'pattern-list':
        return [o.syntax === 'host' ? 'pattern' : o.syntax === 'domain' ? 'domains' : 'regular expression']
      case 'listen':
        return ['IP:port', '[IPv6]:port']
      case 'text':
        return []
    }
  })()
  for (const w of words) {
    const re = new RegExp(`(^|[^\\w-])${w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)
    assert.match(text, re, `${where}: ${id(o)} does not say ${JSON.stringify(w)}`)
  }
}

describe('options table', () => {
  it('each row has a known type, a one-line reason, and what its type needs', () => {
    assert.ok(OPTIONS.length >= 19, `${OPTIONS.length} rows`)
    for (const o of OPTIONS) {
      assert.ok(TYPES.includes(o.type), `${id(o)}: type ${o.type}`)
      assert.match(o.section, /^[a-z]+$/, id(o))
      assert.match(o.key, /^[a-z0-9_]+$/, id(o))
      assert.ok(o.why.length > 10 && !o.why.includes('\n'), `${id(o)}: reason ${JSON.stringify(o.why)}`)
      if (o.type === 'boolean') assert.equal(typeof o.default, 'boolean', id(o))
      if (o.type === 'integer') {
        for (const n of [o.min, o.max, o.default]) assert.ok(Number.isSafeInteger(n), id(o))
        assert.ok(o.min <= o.default && o.default <= o.max, `${id(o)}: ${o.min} <= ${o.default} <= ${o.max}`)
      }
      if (o.type === 'choice') {
        assert.ok(o.choices.length >= 2, id(o))
        assert.ok((o.choices as readonly string[]).includes(o.default), id(o))
        for (const c of o.choices)
          assert.equal(c, c.toLowerCase(), `${id(o)}: choices are matched in lower case`)
      }
      if (o.type === 'address') assert.ok(['ipv4', 'ipv6'].includes(o.family), id(o))
    }
  })

  it('no two rows share a section and key, or a field', () => {
    const keys = OPTIONS.map(id)
    assert.equal(new Set(keys).size, keys.length, keys.join(', '))
    const fields = OPTIONS.flatMap(fieldsOf)
    assert.equal(new Set(fields).size, fields.length, fields.join(', '))
  })

  it('every row fills a field of the defaults, and every field of the defaults has its row', () => {
    const defaults = defaultSettings()
    const filled = OPTIONS.flatMap(fieldsOf)
    assert.deepEqual(
      leaves(defaults).sort(),
      filled.filter((f) => getField(defaults, f) !== undefined).sort(),
    )
    // An address field is absent by default, but the object that holds it is there.
    for (const o of OPTIONS.filter((r) => r.type === 'address')) {
      const holder = o.field.split('.').slice(0, -1).join('.') as SettingPath
      assert.ok(holder && getField(defaults, holder), `${id(o)}: no ${holder} in the defaults`)
    }
  })

  /** A good value for `o` that is not its default, as an ini value. */
  function nonDefault(o: Option): string | undefined {
    switch (o.type) {
      case 'boolean':
        return String(!o.default)
      case 'integer':
        return String(o.default === o.max ? o.min : o.max)
      case 'choice':
        return (o.choices as readonly string[]).find((c) => c !== o.default)
      case 'dns-servers':
        return '127.0.0.1:5353'
      case 'cidr-list':
        return '10.0.0.0/8'
      case 'block-list':
        return '192.0.2.0/24, private'
      case 'address':
        return o.family === 'ipv4' ? '127.0.0.1' : '::1'
      case 'pattern-list':
        return o.syntax === 'host'
          ? '*.example.com'
          : o.syntax === 'domain'
            ? 'example.com'
            : '^550 5\\.7\\.1 .*IPv6'
      case 'listen':
        return '[::1]:9464'
      case 'text':
        return 'shared.'
    }
    // Reached only by a type the switch does not know yet.
    throw new Error(`no value for the type ${(o as { type: string }).type}`)
  }

  for (const o of OPTIONS) {
    it(`${id(o)}=${nonDefault(o)} reaches ${fieldsOf(o).join(' and ')}, and nothing else`, () => {
      const { settings, problems } = parseSettings({ [o.section]: { [o.key]: nonDefault(o) } })
      assert.deepEqual(problems, [])
      const defaults = defaultSettings()
      const changed = leaves(settings).filter(
        (f) => !isDeepEqual(getField(settings, f), getField(defaults, f)),
      )
      assert.deepEqual(changed.sort(), [...fieldsOf(o)].sort())
    })
  }

  // The compiler holds the table to Settings: this compiles a file that breaks the rules and
  // reads the errors.
  it('the type system rejects a row without a field, a row of the wrong type, and a field without a row', function () {
    this.timeout(60000)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'he-options-'))
    try {
      const lib = path.join(ROOT, 'lib')
      const file = path.join(dir, 'rows.ts')
      const lines = [
        `import type { Option } from '${lib}/options'`,
        `export const good: Option = { section: 'main', key: 'port', type: 'integer', field: 'port', default: 25, min: 1, max: 65535, why: 'x' }`,
        `export const noField: Option = { section: 'main', key: 'x', type: 'integer', field: 'noSuchField', default: 1, min: 0, max: 2, why: 'x' }`,
        `export const wrongType: Option = { section: 'main', key: 'x', type: 'integer', field: 'prefer', default: 1, min: 0, max: 2, why: 'x' }`,
        `export const wrongChoice: Option = { section: 'main', key: 'x', type: 'choice', field: 'prefer', choices: ['ipv6', 'ipv5'], default: 'ipv6', why: 'x' }`,
        `declare module '${lib}/config' { interface Settings { extra: { knob: number } } }`,
      ]
      fs.writeFileSync(file, lines.join('\n'))
      const program = ts.createProgram([file], {
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.Node16,
        moduleResolution: ts.ModuleResolutionKind.Node16,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
      })
      const errors = ts.getPreEmitDiagnostics(program).map((d) => ({
        file: d.file ? path.basename(d.file.fileName) : '',
        line: d.file ? d.file.getLineAndCharacterOfPosition(d.start ?? 0).line : -1,
        text: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
      }))
      const on = (name: string, line?: number): typeof errors =>
        errors.filter((e) => e.file === name && (line === undefined || e.line === line))
      const all = errors.map((e) => `${e.file}:${e.line + 1}: ${e.text.split('\n')[0]}`).join('\n')
      assert.deepEqual(on('rows.ts', 1), [], `a good row is accepted:\n${all}`)
      for (const line of [2, 3, 4]) assert.equal(on('rows.ts', line).length, 1, `line ${line + 1}:\n${all}`)
      assert.match(on('rows.ts', 2)[0].text, /noSuchField/)
      const withoutRow = on('options.ts')
      assert.equal(withoutRow.length, 1, all)
      assert.match(withoutRow[0].text, /"extra\.knob"/)
      assert.equal(errors.length, 4, all)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

function isDeepEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepStrictEqual(a, b)
    return true
  } catch {
    return false
  }
}

describe('the shipped happy_eyeballs.ini says what the table says', () => {
  const text = fs.readFileSync(SHIPPED_INI, 'utf8')
  const ini = iniReader.parseIni(SHIPPED_INI, {}, text)

  /** `section.key` → the comment lines above the key, since the previous key or section. */
  const comments: Record<string, string> = {}
  {
    let section = 'main'
    let block: string[] = []
    for (const line of text.split('\n')) {
      const header = /^\[(\w+)\]/.exec(line)
      const key = /^(\w+)(?:\[\])?=/.exec(line)
      if (header) {
        section = header[1]
        block = []
      } else if (key) {
        comments[`${section}.${key[1]}`] = block.join('\n')
        block = []
      } else if (line.startsWith(';')) block.push(line.slice(1).trim())
    }
  }

  it('has the sections and keys of the table, in its order, and nothing else', () => {
    const sections = [...new Set(OPTIONS.map((o) => o.section))]
    assert.deepEqual(Object.keys(ini), sections)
    for (const s of sections) {
      assert.deepEqual(
        Object.keys(ini[s]),
        OPTIONS.filter((o) => o.section === s).map((o) => o.key),
        `[${s}]`,
      )
    }
  })

  for (const o of OPTIONS) {
    const doc = documented(o)
    it(`${id(o)}: the value is the default, and the comment shows it and the range`, () => {
      const value = ini[o.section][o.key]
      assert.equal(Array.isArray(value), isList(o), `${id(o)} is written ${doc.key}=`)
      assert.equal(String(value), doc.iniValue)
      const { settings, problems } = parseSettings({ [o.section]: { [o.key]: value } })
      assert.deepEqual(problems, [])
      assert.deepEqual(settings, defaultSettings())

      const comment = comments[`${o.section}.${o.key}`]
      assert.ok(comment, `no comment above ${id(o)}`)
      assert.ok(comment.startsWith(`${doc.key}=${doc.iniValue}: `), `${id(o)}: ${comment}`)
      assertStatesRange(o, comment, 'happy_eyeballs.ini')
    })
  }
})

describe("the README's configuration table says what the table says", () => {
  const readme = fs.readFileSync(README, 'utf8')
  const section = readme.slice(readme.indexOf('\n## Configuration\n'))
  // The first table of the section: header, separator, rows.
  const lines = section.split('\n')
  const first = lines.findIndex((l) => l.startsWith('|'))
  const end = lines.findIndex((l, i) => i > first && !l.startsWith('|'))
  const rows = lines.slice(first, end).map((l) =>
    l
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim()),
  )
  const [header, , ...body] = rows

  it('has the columns section, key, default and meaning', () => {
    assert.deepEqual(header, ['section', 'key', 'default', 'meaning'])
  })

  it('has one row per option of the table, in its order, and nothing else', () => {
    assert.deepEqual(
      body.map(([s, k]) => `${s}.${k}`),
      OPTIONS.map((o) => `${o.section}.\`${documented(o).key}\``),
    )
  })

  for (const [i, o] of OPTIONS.entries()) {
    it(`${id(o)}: the default and the range`, () => {
      const [, , shown, meaning] = body[i] ?? []
      assert.equal(shown, documented(o).readmeDefault)
      if (o.type === 'choice')
        for (const c of o.choices) assert.ok(meaning.includes(`\`${c}\``), `${c}: ${meaning}`)
      assertStatesRange(o, meaning.replaceAll('`', ''), 'README')
    })
  }

  /** The README paragraph that starts with `start`. */
  const paragraph = (start: string): string => {
    const at = readme.indexOf(start)
    assert.ok(at >= 0, `no paragraph "${start}"`)
    return readme.slice(at, readme.indexOf('\n\n', at))
  }

  it('names every range name block[] takes, and no other', () => {
    const names = [...paragraph('Range names for `block[]`').matchAll(/`([^`]+)`/g)]
      .map((m) => m[1])
      .filter((n) => n !== 'block[]' && !n.includes('/'))
    assert.deepEqual([...names].sort(), [...RANGE_NAMES].sort())
  })

  it('names every ipaddr.js alias with the name it is read as, and no other', () => {
    const pairs = [...paragraph("ipaddr.js's names are accepted").matchAll(/`(\w+)`\s+\(`([a-z0-9-]+)`\)/g)]
    assert.deepEqual(pairs.map((m) => [m[1], m[2]]).sort(), [...RANGE_ALIASES].sort())
  })
})
