// The command line: usage text, options and the destination an operator pastes (a domain
// or a mail address) → validated options, or a UsageError naming what is wrong.

import { parseArgs } from 'node:util'

import { Address } from 'address-rfc2821'

import { isDnsServer } from '../config'
import { validDomain } from '../resolve'

export const PROG = 'haraka-happy-eyeballs'

export const USAGE = `Usage: ${PROG} <command> <domain> [options]
       ${PROG} status [--metrics URL] [--config DIR] [--json] [--timeout MS]

Shows what the Haraka happy-eyeballs plugin does for mail to <domain>, with the
happy_eyeballs.ini Haraka would read (package defaults, then --config overrides).
<domain> may also be a mail address, user@example.org or <user@example.org>:
its domain is the one looked up.

Commands:
  plan <domain>     resolve the MX hosts and print the plugin's plan: MX hosts with
                    preference, kept addresses in connect order, filtered addresses
                    with the reason, DNS errors, and the outcome (deliver, defer,
                    bounce, null MX)
  probe <domain>    the plan, then plain TCP connects (no SMTP) to the planned
                    addresses: connect time or error per address, reachability per
                    family, and the address the plugin's race would choose
  status            what a running Haraka's plugin has seen, from its metrics
                    endpoint ([metrics] listen): per family, connect attempts by
                    outcome, deliveries, fallbacks to the other family, filtered
                    addresses by reason; deferrals and bounces by status; race
                    durations; each [watch] domain's latest probes. With --config and [redis] enabled=true, what the
                    whole fleet knows, from Redis: families' health, MX hosts
                    with impaired IPv6 and since when, MX hosts on IPv4 by
                    policy and until when

Options:
  --config DIR      Haraka config directory holding happy_eyeballs.ini (and
                    redis.ini, for status)
  --dns HOST:PORT   DNS server(s) to ask, IP, IP:PORT or [IPv6]:PORT, comma
                    separated (overrides [dns] servers)
  --port N          port to probe (default: [main] port, 25)
  --timeout MS      probe: bound on the race and on each further connect
                    (default: [race] deadline_ms); status: bound on the request
                    (default: 5000)
  --metrics URL     status: the plugin's endpoint, e.g. http://127.0.0.1:9464/metrics
                    (a URL without a path gets /metrics)
  --json            print one JSON object instead of text
  -h, --help        show this help

Exit status: 0 deliverable plan (plan), an address connected (probe) or the
endpoint answered with the plugin's metrics and Redis with the shared state
(status); 1 defer, bounce, null MX, DNS unreachable, nothing connected, no
metrics from the endpoint or no answer from Redis; 2 usage error.
`

/** A mistake on the command line: printed as one line, exit status 2. */
export class UsageError extends Error {}

export interface StatusOptions {
  command: 'status'
  /** The metrics endpoint, `http://127.0.0.1:9464/metrics`; absent: the shared state alone. */
  metricsUrl?: string
  /** Where happy_eyeballs.ini (and redis.ini) are: [redis] on reads the fleet's shared state. */
  configDir?: string
  timeoutMs?: number
  json: boolean
}

export interface Options {
  command: 'plan' | 'probe'
  /** The domain to look up (A-label, lower case). */
  domain: string
  configDir?: string
  dns?: string[]
  port?: number
  timeoutMs?: number
  json: boolean
}

function wholeNumber(text: string, min: number, max: number): number | undefined {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined
}

/** What the address parser found wrong, in one line. */
function addressProblem(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  // The grammar reports `Syntax error at line 1 col 9:` and, further down, `Unexpected " ".`
  const col = /\bcol (\d+)\b/.exec(message)?.[1]
  const token = /^Unexpected ("(?:\\.|[^"\\])*"|\S+)/m.exec(message)?.[1]
  if (col && token) return `unexpected ${token} at character ${col}`
  // Input the grammar accepts a start of, but which stops before an address is complete.
  if (message.startsWith('Invalid RFC-5321 address: "')) return 'incomplete address'
  return message.split('\n')[0]
}

/**
 * The domain of what an operator pastes: a domain, or a mail address (`user@example.org`,
 * `<user@example.org>`, as `exim -bt` takes) whose domain is its host part.
 */
export function destinationDomain(input: string): string {
  const text = input.trim()
  if (!text.includes('@') && !text.startsWith('<')) {
    const domain = validDomain(text)
    if (!domain) throw new UsageError(`invalid domain '${input}'`)
    return domain
  }
  let address: Address
  try {
    address = new Address(text)
  } catch (err) {
    throw new UsageError(`invalid address '${input}': ${addressProblem(err)}`)
  }
  const host = address.host
  if (!host) throw new UsageError(`invalid address '${input}': it has no domain`)
  if (host.startsWith('[')) {
    throw new UsageError(`invalid address '${input}': ${host} is an address literal, not a domain`)
  }
  const domain = validDomain(host)
  if (!domain) throw new UsageError(`invalid address '${input}': invalid domain '${host}'`)
  return domain
}

/** A one-line message naming the offending option, out of a node:util parseArgs error. */
function parseArgsProblem(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown }
  const message = String(e?.message ?? err)
  // `'--port <value>'`, `'-h, --help'`: the option as the user would type it.
  const quoted = /'(-[^']*)'/.exec(message)?.[1] ?? ''
  const option =
    quoted
      .replace(/ <value>$/, '')
      .split(', ')
      .pop() ?? quoted
  switch (e?.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option}`
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(message)) return `option ${option} takes no value`
      return `option ${option} needs a value`
    default:
      return message.split('\n')[0]
  }
}

/** An http(s) URL of a metrics endpoint; one without a path gets `/metrics`. */
export function metricsUrl(text: string): string {
  let url: URL
  try {
    url = new URL(text.trim())
  } catch {
    throw new UsageError(`bad --metrics '${text}': expected a URL such as http://127.0.0.1:9464/metrics`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`bad --metrics '${text}': expected an http or https URL`)
  }
  if (url.pathname === '/') url.pathname = '/metrics'
  return url.toString()
}

const timeoutOption = (text: string): number => {
  const ms = wholeNumber(text, 1, 600000)
  if (ms === undefined) throw new UsageError(`bad --timeout '${text}': expected 1 to 600000 ms`)
  return ms
}

/** The options, or undefined for: print the help. Throws a UsageError. */
export function parseOptions(argv: string[]): Options | StatusOptions | undefined {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        dns: { type: 'string' },
        port: { type: 'string' },
        timeout: { type: 'string' },
        metrics: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  } catch (err) {
    throw new UsageError(parseArgsProblem(err))
  }
  const { values, positionals } = parsed
  if (values.help || positionals[0] === 'help') return undefined

  const [command, destination, ...extra] = positionals
  if (!command) throw new UsageError('missing command: plan, probe or status')
  if (command === 'status') return statusOptions(values, positionals.slice(1))
  if (command !== 'plan' && command !== 'probe') {
    throw new UsageError(`unknown command '${command}': use plan, probe or status`)
  }
  if (values.metrics !== undefined) throw new UsageError(`option --metrics is for status, not ${command}`)
  if (destination === undefined || destination.trim() === '')
    throw new UsageError(`missing domain: ${command} <domain>`)
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`)

  const opts: Options = { command, domain: destinationDomain(destination), json: values.json }

  if (values.config !== undefined) opts.configDir = values.config
  if (values.dns !== undefined) {
    const servers = values.dns
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    const wrong = servers.find((s) => !isDnsServer(s))
    if (!servers.length || wrong !== undefined) {
      throw new UsageError(`bad --dns '${wrong ?? values.dns}': expected IP, IP:PORT or [IPv6]:PORT`)
    }
    opts.dns = servers
  }
  if (values.port !== undefined) {
    const port = wholeNumber(values.port, 1, 65535)
    if (port === undefined) throw new UsageError(`bad --port '${values.port}': expected 1 to 65535`)
    opts.port = port
  }
  if (values.timeout !== undefined) opts.timeoutMs = timeoutOption(values.timeout)
  return opts
}

function statusOptions(
  values: { metrics?: string; timeout?: string; json: boolean; config?: string; dns?: string; port?: string },
  rest: string[],
): StatusOptions {
  if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}': status takes no domain`)
  for (const name of ['dns', 'port'] as const) {
    if (values[name] !== undefined) throw new UsageError(`option --${name} is not for status`)
  }
  const noMetrics = values.metrics === undefined || values.metrics.trim() === ''
  if (noMetrics && values.config === undefined) {
    throw new UsageError(
      'status needs a metrics URL: --metrics http://HOST:PORT/metrics, the [metrics] listen address of the running Haraka, ' +
        'or --config DIR with [redis] enabled=true in its happy_eyeballs.ini',
    )
  }
  const opts: StatusOptions = { command: 'status', json: values.json }
  if (!noMetrics && values.metrics !== undefined) opts.metricsUrl = metricsUrl(values.metrics)
  if (values.config !== undefined) opts.configDir = values.config
  if (values.timeout !== undefined) opts.timeoutMs = timeoutOption(values.timeout)
  return opts
}
