// The plugin as Haraka loads it: the BUILT plugin (package.json main) through
// haraka-test-fixtures, with the type of the source it was built from.

import fixtures from 'haraka-test-fixtures'
import type DSN from 'haraka-dsn'

import type * as face from '../../index'
import type { MxEntry } from '../../lib/route'

type Face = typeof face

/** `this` inside the plugin's hooks, as index.ts declares it (its state included). */
type PluginThis = ThisParameterType<Face['route_mx']>

/** A loaded plugin: its exports as methods, on the Haraka plugin object they run on. */
export type PluginHandle = PluginThis & { [K in keyof Face]: OmitThisParameter<Face[K]> }

/** The plugin's state after register(); a test that reads it has registered first. */
export type PluginState = NonNullable<PluginThis['happy_eyeballs']>

export function makePlugin(opts: { register?: boolean; configDir?: string } = {}): PluginHandle {
  // The fixture builds the plugin object from dist/ at run time: its shape is the source's.
  return fixtures.makePlugin('happy-eyeballs', opts) as unknown as PluginHandle
}

export function stateOf(plugin: PluginHandle): PluginState {
  if (!plugin.happy_eyeballs) throw new Error('the plugin has no state: register() first')
  return plugin.happy_eyeballs
}

/** A recipient with what extend_rcpt_with_dsn wrote on it. */
export interface SeenRecipient extends Haraka.Recipient {
  dsn_code?: number
  dsn_msg?: string
  dsn_status?: string
}

/** An outbound queue item that keeps its log lines and the DSN its recipient was given. */
export interface FakeHMail extends Haraka.HMail {
  lines: string[]
  rcpt: SeenRecipient
}

export function makeHmail(domain: string, todo: Partial<Haraka.HMail['todo']> = {}): FakeHMail {
  const lines: string[] = []
  const log = (level: string) => (msg: string) => lines.push(`${level} ${msg}`)
  const rcpt: SeenRecipient = { original: `<user@${domain}>` }
  return {
    todo: { domain, rcpt_to: [rcpt], ...todo },
    notes: {},
    lines,
    rcpt,
    loginfo: log('info'),
    logwarn: log('warn'),
    logerror: log('error'),
    extend_rcpt_with_dsn(r: SeenRecipient, dsn: DSN) {
      r.dsn_code = dsn.code
      r.dsn_msg = dsn.msg
      r.dsn_status = `${dsn.cls}.${dsn.sub}.${dsn.det}`
    },
  }
}

// What get_mx answers with is untyped in Haraka; each answer has the shape its code implies.
/** The MX entries of an OK answer. */
export const mxEntries = (value: unknown): MxEntry[] => value as MxEntry[]
/** The single entry of an OK answer for a null MX. */
export const mxEntry = (value: unknown): MxEntry => value as MxEntry
/** The message of a DENY or DENYSOFT answer. */
export const answerText = (value: unknown): string => value as string
