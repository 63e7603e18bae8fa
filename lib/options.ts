// The options of happy_eyeballs.ini: one row per key, in the order the file documents them.
// The parser, the defaults, the tests and the documentation checks all read this table;
// adding an option is one row here and its field in Settings.

import type { Cidr, Family, RangeName } from './classify'
import type { Settings } from './config'

// ---------------------------------------------------------------------------------------
// Fields of Settings, by dotted path ('race.deadlineMs'), typed.

type Leaf = boolean | number | string | readonly unknown[] | ReadonlySet<unknown>

/** Dotted paths to the leaves of T, optional leaves included. */
type LeafPath<T, Prefix extends string = ''> = {
  [K in keyof T & string]-?: NonNullable<T[K]> extends Leaf
    ? `${Prefix}${K}`
    : LeafPath<NonNullable<T[K]>, `${Prefix}${K}.`>
}[keyof T & string]

export type SettingPath = LeafPath<Settings>

/** The type of the Settings field at P (an optional field without its undefined). */
export type SettingAt<P extends string, T = Settings> = P extends `${infer Head}.${infer Rest}`
  ? Head extends keyof T
    ? SettingAt<Rest, NonNullable<T[Head]>>
    : never
  : P extends keyof T
    ? NonNullable<T[P]>
    : never

/** The paths whose field holds exactly V. */
type PathTo<V> = {
  [P in SettingPath]: [SettingAt<P>] extends [V] ? ([V] extends [SettingAt<P>] ? P : never) : never
}[SettingPath]

/** The paths whose field holds one of a few strings. */
type ChoicePath = {
  [P in SettingPath]: SettingAt<P> extends string ? (string extends SettingAt<P> ? never : P) : never
}[SettingPath]

// ---------------------------------------------------------------------------------------
// The kinds of option.

interface Row {
  section: string
  /** The ini key, without `[]`. */
  key: string
  /** One line: why the option exists. */
  why: string
}

/** `true`/`false` (also yes/no, on/off, 1/0). */
export interface BooleanOption extends Row {
  type: 'boolean'
  field: PathTo<boolean>
  default: boolean
}

/** A whole number from `min` to `max`. */
export interface IntegerOption extends Row {
  type: 'integer'
  field: PathTo<number>
  default: number
  min: number
  max: number
}

type ChoiceOptionAt<P extends ChoicePath> = Row & {
  type: 'choice'
  field: P
  /** What the field's type allows, lower case: the ini value is matched case-insensitively. */
  choices: readonly SettingAt<P>[]
  default: SettingAt<P>
}

/** One of `choices`. */
export type ChoiceOption = { [P in ChoicePath]: ChoiceOptionAt<P> }[ChoicePath]

/** Resolvers as IP or IP:port, comma separated or `key[]=`; none: the system's resolvers. */
export interface DnsServersOption extends Row {
  type: 'dns-servers'
  field: PathTo<string[]>
}

/** CIDRs, one per `key[]=` line or comma separated; none by default. A bad entry is dropped alone. */
export interface CidrListOption extends Row {
  type: 'cidr-list'
  field: PathTo<Cidr[]>
}

/** CIDRs and range names, as for `cidr-list`; the two land in two fields. */
export interface BlockListOption extends Row {
  type: 'block-list'
  field: PathTo<Cidr[]>
  rangesField: PathTo<ReadonlySet<RangeName>>
}

/**
 * Patterns, one per `key[]=` line or comma separated; none by default. `host`: a domain or
 * `*.domain` (stored lower case, A-label); `domain`: a domain alone; `regex`: a regular
 * expression. A bad entry is dropped alone.
 */
export interface PatternListOption extends Row {
  type: 'pattern-list'
  syntax: 'host' | 'domain' | 'regex'
  field: PathTo<string[]>
}

/** One IP address of `family`; none by default. */
export interface AddressOption extends Row {
  type: 'address'
  field: PathTo<string>
  family: Family
}

/** `IP:port` or `[IPv6]:port` to listen on; none by default (off). */
export interface ListenOption extends Row {
  type: 'listen'
  field: PathTo<string>
}

/** Free text, trimmed: `default`, or none (the field stays absent). */
export interface TextOption extends Row {
  type: 'text'
  field: PathTo<string>
  default?: string
  /** A password: a problem line never shows the value. */
  secret?: boolean
}

export type Option =
  | BooleanOption
  | IntegerOption
  | ChoiceOption
  | DnsServersOption
  | CidrListOption
  | BlockListOption
  | AddressOption
  | PatternListOption
  | ListenOption
  | TextOption

// ---------------------------------------------------------------------------------------

export const OPTIONS = [
  {
    section: 'main',
    key: 'enabled',
    type: 'boolean',
    field: 'enabled',
    default: true,
    why: 'false makes the plugin answer nothing, so Haraka routes as if it were absent',
  },
  {
    section: 'main',
    key: 'prefer',
    type: 'choice',
    field: 'prefer',
    choices: ['ipv6', 'ipv4'],
    default: 'ipv6',
    why: 'the family tried first inside each MX preference group (RFC 8305 §4)',
  },
  {
    section: 'main',
    key: 'first_family_count',
    type: 'integer',
    field: 'firstFamilyCount',
    default: 1,
    min: 1,
    max: 16,
    why: 'addresses of the preferred family before the first of the other',
  },
  {
    section: 'main',
    key: 'port',
    type: 'integer',
    field: 'port',
    default: 25,
    min: 1,
    max: 65535,
    why: 'the SMTP port of the MX hosts',
  },
  {
    section: 'main',
    key: 'max_addresses',
    type: 'integer',
    field: 'maxAddresses',
    default: 16,
    min: 2,
    max: 256,
    why: 'addresses handed to Haraka per message, so a hostile zone cannot fan out',
  },
  {
    section: 'main',
    key: 'connectivity_check_s',
    type: 'integer',
    field: 'connectivityCheckS',
    default: 60,
    min: 0,
    max: 86400,
    why: "how often the host's interfaces are read again for the families it can send from; 0 turns the check off",
  },
  {
    section: 'dns',
    key: 'servers',
    type: 'dns-servers',
    field: 'dns.servers',
    why: "resolvers to ask instead of the system's",
  },
  {
    section: 'dns',
    key: 'timeout_ms',
    type: 'integer',
    field: 'dns.timeoutMs',
    default: 5000,
    min: 100,
    max: 30000,
    why: 'per DNS query, so every lookup ends well inside the hook timeout',
  },
  {
    section: 'dns',
    key: 'resolution_delay_ms',
    type: 'integer',
    field: 'dns.resolutionDelayMs',
    default: 50,
    min: 0,
    max: 2000,
    why: 'how long an A answer that came first waits for the AAAA of the same host (RFC 8305 §3)',
  },
  {
    section: 'filter',
    key: 'allow',
    type: 'cidr-list',
    field: 'filter.policy.allow',
    why: 'special addresses re-permitted (internal relays); never 0.0.0.0 or ::',
  },
  {
    section: 'filter',
    key: 'block',
    type: 'block-list',
    field: 'filter.policy.blockCidrs',
    rangesField: 'filter.policy.blockRanges',
    why: 'global addresses dropped all the same; wins over allow',
  },
  {
    section: 'filter',
    key: 'all_filtered',
    type: 'choice',
    field: 'filter.allFiltered',
    choices: ['defer', 'bounce'],
    default: 'defer',
    why: 'what happens when every MX address is filtered: defer (4.4.4) or bounce (5.4.4)',
  },
  {
    section: 'bind',
    key: 'ipv4',
    type: 'address',
    field: 'bind.ipv4',
    family: 'ipv4',
    why: 'local address for IPv4 connections; none lets the system choose',
  },
  {
    section: 'bind',
    key: 'ipv6',
    type: 'address',
    field: 'bind.ipv6',
    family: 'ipv6',
    why: 'local address for IPv6 connections, apart because an IPv4 bind towards IPv6 fails at once',
  },
  {
    section: 'race',
    key: 'enabled',
    type: 'boolean',
    field: 'race.enabled',
    default: true,
    why: 'race the planned addresses (RFC 8305 §5); false hands Haraka the ordered list only',
  },
  {
    section: 'race',
    key: 'success',
    type: 'choice',
    field: 'race.success',
    choices: ['greeting', 'connect'],
    default: 'greeting',
    why: "what wins an attempt: the server's 220 greeting, or the TCP connect alone",
  },
  {
    section: 'race',
    key: 'attempt_delay_ms',
    type: 'integer',
    field: 'race.attemptDelayMs',
    default: 250,
    min: 10,
    max: 2000,
    why: 'start the next address after this long without an answer (RFC 8305 §5)',
  },
  {
    section: 'race',
    key: 'min_attempt_delay_ms',
    type: 'integer',
    field: 'race.minAttemptDelayMs',
    default: 100,
    min: 10,
    max: 2000,
    why: 'the least attempt delay learnt from measured connect times; attempt_delay_ms is the most',
  },
  {
    section: 'race',
    key: 'group_delay_ms',
    type: 'integer',
    field: 'race.groupDelayMs',
    default: 2000,
    min: 0,
    max: 30000,
    why: 'start the next MX preference group after this long: lower-preference hosts are backups',
  },
  {
    section: 'race',
    key: 'deadline_ms',
    type: 'integer',
    field: 'race.deadlineMs',
    default: 15000,
    min: 100,
    max: 60000,
    why: "give up the whole race and defer 4.4.1 with every address's error",
  },
  {
    section: 'cache',
    key: 'ttl_s',
    type: 'integer',
    field: 'cache.ttlS',
    default: 600,
    min: 0,
    max: 86400,
    why: 'how long a connect outcome demotes an address or family (RFC 6555); 0 remembers nothing',
  },
  {
    section: 'cache',
    key: 'max_entries',
    type: 'integer',
    field: 'cache.maxEntries',
    default: 10000,
    min: 10,
    max: 1000000,
    why: 'bound on remembered outcomes; least recently used go first',
  },
  {
    section: 'egress',
    key: 'ipv6_impaired_after',
    type: 'integer',
    field: 'egress.ipv6ImpairedAfter',
    default: 3,
    min: 0,
    max: 1000,
    why: 'distinct MX hosts whose IPv6 went unanswered while IPv4 worked before new ones start with IPv4; 0 never',
  },
  {
    section: 'egress',
    key: 'window_s',
    type: 'integer',
    field: 'egress.windowS',
    default: 600,
    min: 1,
    max: 86400,
    why: 'how long an unanswered IPv6 attempt counts towards impaired IPv6 egress',
  },
  {
    section: 'egress',
    key: 'recheck_s',
    type: 'integer',
    field: 'egress.recheckS',
    default: 60,
    min: 0,
    max: 86400,
    why: 'while IPv6 egress is impaired, probe an IPv6 address IPv4 won before at most this often, so a healed path is seen; 0 never',
  },
  {
    section: 'family',
    key: 'ipv4_only',
    type: 'pattern-list',
    syntax: 'host',
    field: 'family.ipv4Only',
    why: 'destinations (recipient domain or MX host pattern) reached over IPv4 only',
  },
  {
    section: 'family',
    key: 'ipv6_only',
    type: 'pattern-list',
    syntax: 'host',
    field: 'family.ipv6Only',
    why: 'destinations (recipient domain or MX host pattern) reached over IPv6 only',
  },
  {
    section: 'family',
    key: 'prefer_ipv4',
    type: 'pattern-list',
    syntax: 'host',
    field: 'family.preferIpv4',
    why: 'destinations whose MX preference groups start with IPv4, whatever [main] prefer says',
  },
  {
    section: 'family',
    key: 'prefer_ipv6',
    type: 'pattern-list',
    syntax: 'host',
    field: 'family.preferIpv6',
    why: 'destinations whose MX preference groups start with IPv6, whatever [main] prefer says',
  },
  {
    section: 'policy',
    key: 'enabled',
    type: 'boolean',
    field: 'policy.enabled',
    default: true,
    why: 'an IPv6 sender-policy refusal is retried over IPv4 at once; false leaves every reply to Haraka',
  },
  {
    section: 'policy',
    key: 'patterns',
    type: 'pattern-list',
    syntax: 'regex',
    field: 'policy.patterns',
    why: 'more replies to take as IPv6 sender-policy refusals, besides the built-in ones',
  },
  {
    section: 'policy',
    key: 'ttl_s',
    type: 'integer',
    field: 'policy.ttlS',
    default: 86400,
    min: 0,
    max: 2592000,
    why: 'how long an MX host that refused IPv6 by policy is reached over IPv4 only; 0 remembers nothing',
  },
  {
    section: 'metrics',
    key: 'listen',
    type: 'listen',
    field: 'metrics.listen',
    why: 'where to serve Prometheus metrics at /metrics; none serves nothing',
  },
  {
    section: 'watch',
    key: 'domains',
    type: 'pattern-list',
    syntax: 'domain',
    field: 'watch.domains',
    why: 'domains resolved and probed in the background (TCP, greeting, QUIT), feeding health and metrics; none: off',
  },
  {
    section: 'watch',
    key: 'interval_s',
    type: 'integer',
    field: 'watch.intervalS',
    default: 60,
    min: 5,
    max: 86400,
    why: 'from the end of one round of probes to the start of the next, so rounds never overlap',
  },
  {
    section: 'watch',
    key: 'concurrency',
    type: 'integer',
    field: 'watch.concurrency',
    default: 4,
    min: 1,
    max: 64,
    why: 'DNS lookups and probe connections at once, so a long list never floods the network',
  },
  {
    section: 'watch',
    key: 'timeout_ms',
    type: 'integer',
    field: 'watch.timeoutMs',
    default: 5000,
    min: 100,
    max: 30000,
    why: 'per probe, TCP connect and greeting: a black-holed address counts as down after this long',
  },
  {
    section: 'redis',
    key: 'enabled',
    type: 'boolean',
    field: 'redis.enabled',
    default: false,
    why: 'share connect outcomes and policy refusals with every worker and host through Redis; false keeps them in this process',
  },
  {
    section: 'redis',
    key: 'host',
    type: 'text',
    field: 'redis.host',
    why: "the Redis server; none: redis.ini's [server] host, else 127.0.0.1",
  },
  {
    section: 'redis',
    key: 'port',
    type: 'integer',
    field: 'redis.port',
    default: 0,
    min: 0,
    max: 65535,
    why: "the Redis port; 0: redis.ini's [server] port, else 6379",
  },
  {
    section: 'redis',
    key: 'db',
    type: 'integer',
    field: 'redis.db',
    default: 0,
    min: 0,
    max: 65535,
    why: 'the Redis database number the shared state lives in',
  },
  {
    section: 'redis',
    key: 'password',
    type: 'text',
    field: 'redis.password',
    secret: true,
    why: "the Redis password; none: redis.ini's, else no AUTH",
  },
  {
    section: 'redis',
    key: 'prefix',
    type: 'text',
    field: 'redis.prefix',
    default: 'happy-eyeballs:',
    why: 'put before every key, so several fleets or plugins can share one database',
  },
  {
    section: 'redis',
    key: 'timeout_ms',
    type: 'integer',
    field: 'redis.timeoutMs',
    default: 20,
    min: 1,
    max: 1000,
    why: 'the longest a message waits for the shared state before it is planned from local state',
  },
] as const satisfies readonly Option[]

type TableRow = (typeof OPTIONS)[number]
type FilledField = TableRow['field'] | Extract<TableRow, { rangesField: string }>['rangesField']

// The compiler names any Settings field no row fills: this must stay `never`.
type MustBeNever<T extends never> = T
export type SettingsWithoutARow = MustBeNever<Exclude<SettingPath, FilledField>>

// ---------------------------------------------------------------------------------------

type Holder = Record<string, unknown>

/** The Settings field at `path`. */
export function getField<P extends SettingPath>(settings: Settings, path: P): SettingAt<P> | undefined {
  let at: unknown = settings
  for (const part of path.split('.')) at = at && typeof at === 'object' ? (at as Holder)[part] : undefined
  return at as SettingAt<P> | undefined
}

/**
 * Sets the field at `path`, making the objects on the way. `undefined` leaves an optional
 * field absent (its object is still made), as Settings has it.
 */
export function setField<P extends SettingPath>(
  settings: Settings,
  path: P,
  value: SettingAt<P> | undefined,
): void {
  const parts = path.split('.')
  const last = parts.pop() as string
  let at = settings as unknown as Holder
  for (const part of parts) {
    if (!at[part] || typeof at[part] !== 'object') at[part] = {}
    at = at[part] as Holder
  }
  if (value !== undefined) at[last] = value
}
