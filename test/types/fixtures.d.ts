// Declarations for the untyped test packages, as far as the tests use them.

declare module 'haraka-test-fixtures' {
  /** One name's records in the fixture DNS server. */
  export interface DnsZone {
    a?: string[]
    aaaa?: string[]
    mx?: Array<{ preference: number; exchange: string }>
    txt?: string[]
    rcode?: 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED'
    delayMs?: number
    drop?: boolean
  }

  export interface DnsServer {
    port: number
    address: string
    setZone(name: string, zone: DnsZone): void
    clearZones(): void
    close(): Promise<void>
  }

  export const dns: {
    start(zones?: Record<string, DnsZone>, opts?: { port?: number }): Promise<DnsServer>
  }

  /** A Haraka plugin object built from the package's main module (the built plugin). */
  export function makePlugin(name: string, opts?: { register?: boolean; configDir?: string }): unknown
}

declare module 'haraka-config/lib/readers/ini' {
  type IniValue = string | number | boolean | Array<string | number | boolean>

  /** Haraka's ini reader: sections of keys, `main` for keys above the first section. */
  export function parseIni(
    name: string,
    options: { booleans?: string[] },
    data: string,
  ): Record<string, Record<string, IniValue>>
}
