// Types of cname-dns.js, which stays JavaScript while JavaScript tests require it.

/** The records one name serves: a CNAME, or addresses and MX records. */
export interface CnameZone {
  cname?: string
  a?: string[]
  aaaa?: string[]
  mx?: Array<{ preference: number; exchange: string }>
}

export interface CnameDns {
  port: number
  close: () => Promise<void>
}

export function startCnameDns(zones: Record<string, CnameZone>): Promise<CnameDns>
