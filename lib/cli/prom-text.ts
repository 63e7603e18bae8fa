// The Prometheus text exposition format (version 0.0.4), read back into samples: what a
// /metrics endpoint serves. Comments other than TYPE are skipped; a line that is no sample
// is an error naming its line number, so a page that is not metrics is not read as zeros.

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  samples: Sample[]
  /** Metric family name → its TYPE (counter, gauge, histogram, summary, untyped). */
  types: Map<string, string>
}

export class ExpositionError extends Error {}

const NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y
const LABEL_NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y

function parseValue(text: string): number | undefined {
  switch (text) {
    case '+Inf':
    case 'Inf':
      return Infinity
    case '-Inf':
      return -Infinity
    case 'NaN':
      return NaN
  }
  // Number('') is 0 and Number('0x10') 16: neither is a sample value.
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text) ? Number(text) : undefined
}

/** One sample line: `name{a="x",b="y"} value [timestamp]`. */
function parseSample(line: string, lineNo: number): Sample {
  const fail = (why: string): never => {
    throw new ExpositionError(`line ${lineNo}: ${why}: ${line.length > 80 ? `${line.slice(0, 80)}…` : line}`)
  }
  NAME.lastIndex = 0
  const name = NAME.exec(line)?.[0]
  if (!name) return fail('no metric name')
  let at = name.length
  const labels: Record<string, string> = {}
  if (line[at] === '{') {
    at++
    for (;;) {
      while (line[at] === ' ') at++
      if (line[at] === '}') break
      LABEL_NAME.lastIndex = at
      const label = LABEL_NAME.exec(line)?.[0]
      if (!label) return fail('bad label name')
      at += label.length
      if (line[at] !== '=' || line[at + 1] !== '"') return fail(`label ${label} has no quoted value`)
      at += 2
      let value = ''
      for (;;) {
        const c = line[at]
        if (c === undefined) return fail(`label ${label} is not closed`)
        at++
        if (c === '"') break
        if (c !== '\\') {
          value += c
          continue
        }
        const e = line[at++]
        if (e === 'n') value += '\n'
        else if (e === '\\' || e === '"') value += e
        else return fail(`label ${label} has a bad escape`)
      }
      labels[label] = value
      while (line[at] === ' ') at++
      if (line[at] === ',') at++
      else if (line[at] !== '}') return fail('expected , or } after a label')
    }
    at++
  }
  const rest = line.slice(at).trim().split(/\s+/)
  if (rest.length < 1 || rest.length > 2 || rest[0] === '') return fail('expected a value')
  const value = parseValue(rest[0])
  if (value === undefined) return fail(`bad value ${rest[0]}`)
  if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) return fail(`bad timestamp ${rest[1]}`)
  return { name, labels, value }
}

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '')
    if (!line.trim()) return
    if (line.startsWith('#')) {
      const type = /^#\s*TYPE\s+(\S+)\s+(\S+)\s*$/.exec(line)
      if (type) types.set(type[1], type[2])
      return
    }
    samples.push(parseSample(line, i + 1))
  })
  return { samples, types }
}
