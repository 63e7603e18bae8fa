// Which MX entries, and which MX lists, this plugin handed to Haraka, with the connect target
// and the message each belongs to. Haraka 3.1+ passes the very entry object to its client
// pool; Haraka 3.0.x passes the very list to found_mx. Anything not found here was planned by
// someone else (another routing plugin, Haraka's own lookup) and is left untouched.
// Weak maps: an entry is forgotten with the message that holds it.

import type { MessageConnects } from './connects'
import type { RaceTarget } from './race'

export interface PlannedEntry {
  target: RaceTarget
  record: MessageConnects
  /** Position in the planned list: Haraka 3.0.x copies entries, keeping their priority. */
  index: number
}

export interface PlannedList {
  entries: object[]
  targets: RaceTarget[]
  record: MessageConnects
}

export class PlannedEntries {
  private readonly byEntry = new WeakMap<object, PlannedEntry>()
  private readonly byList = new WeakMap<object, PlannedList>()

  /** `entries[i]` is the Haraka MX entry for `targets[i]`; `entries` the list given to Haraka. */
  track(entries: object[], targets: RaceTarget[], record: MessageConnects): void {
    if (entries.length !== targets.length) return
    entries.forEach((entry, index) => this.byEntry.set(entry, { target: targets[index], record, index }))
    this.byList.set(entries, { entries, targets, record })
  }

  entry(mx: unknown): PlannedEntry | undefined {
    return mx && typeof mx === 'object' ? this.byEntry.get(mx) : undefined
  }

  list(mxs: unknown): PlannedList | undefined {
    return mxs && typeof mxs === 'object' ? this.byList.get(mxs) : undefined
  }
}

/** The process's registry: shared by every plugin instance, as the wrappers it feeds are. */
export const plannedEntries = new PlannedEntries()
