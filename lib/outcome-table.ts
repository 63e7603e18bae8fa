// A compact LRU of connect outcomes with a TTL, for the health cache. Each entry is a few
// numbers in typed arrays (45 bytes or so), not an object per entry with a string key: at a
// fleet's 100k destinations (400k entries) a Map-based LRU takes 80+ MB of heap, this under
// 20 MB (bench/memory.js). Keys are 64-bit fingerprints of their text, found by linear
// probing; two keys alike in all 64 bits are taken as one (at 400k entries, about one chance
// in 10^8), which at worst reorders addresses, never loses mail.

/** A key's fingerprint: two independent 32-bit hashes of its text. */
export interface Fingerprint {
  hi: number
  lo: number
}

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * The fingerprint of `tag` followed by `text`; with `lowerCase`, ASCII letters of `text` are
 * hashed as lower case (host names compare case-insensitively, without a lower-cased copy).
 */
export function fingerprint(tag: number, text: string, lowerCase = false): Fingerprint {
  let a = Math.imul(FNV_OFFSET ^ tag, FNV_PRIME)
  let b = Math.imul(0x9e3779b9 ^ tag, 0x85ebca6b)
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i)
    if (lowerCase && c >= 65 && c <= 90) c += 32
    a = Math.imul(a ^ c, FNV_PRIME)
    b = Math.imul(b ^ c, 0xcc9e2d51)
    b = (b << 15) | (b >>> 17)
  }
  // Final mixes (murmur3's fmix32) so that nearby texts spread over the whole table.
  const mix = (h: number): number => {
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
    return (h ^ (h >>> 16)) >>> 0
  }
  return { hi: mix(a ^ text.length), lo: mix(b ^ Math.imul(text.length, 0x27d4eb2f)) }
}

/** Flags of an outcome. */
export const OK = 1
export const SLOW = 2

/** One entry as stored: the flags, the latency, when it was seen and its interned error. */
export interface StoredOutcome {
  flags: number
  latencyMs: number
  at: number
  error: string | undefined
}

export interface OutcomeTableOptions {
  maxEntries: number
  ttlMs: number
  now: () => number
}

/** Error texts kept once each: the same few codes and phrases recur across entries. */
class ErrorTexts {
  private readonly ids = new Map<string, number>()
  private readonly texts: string[] = ['']
  /** Texts beyond the bound, kept per slot (a flood of distinct texts cannot grow the table). */
  private readonly loose = new Map<number, string>()
  static readonly MAX = 1024
  static readonly LOOSE = 0xffff

  idOf(text: string | undefined, slot: number): number {
    this.loose.delete(slot)
    if (text === undefined) return 0
    let id = this.ids.get(text)
    if (id !== undefined) return id
    if (this.texts.length <= ErrorTexts.MAX) {
      id = this.texts.length
      this.texts.push(text)
      this.ids.set(text, id)
      return id
    }
    this.loose.set(slot, text)
    return ErrorTexts.LOOSE
  }

  textOf(id: number, slot: number): string | undefined {
    if (id === 0) return undefined
    return id === ErrorTexts.LOOSE ? this.loose.get(slot) : this.texts[id]
  }

  free(slot: number): void {
    this.loose.delete(slot)
  }

  clear(): void {
    this.loose.clear()
  }
}

const NONE = -1
const FIRST_CAPACITY = 1024

export class OutcomeTable {
  private readonly maxEntries: number
  private readonly ttlMs: number
  private readonly now: () => number
  private readonly errors = new ErrorTexts()

  private capacity = 0
  /** Slots handed out so far; below it, a slot is live or on the free list. */
  private used = 0
  private live = 0
  /** Free slots, linked through `next`. */
  private free = NONE
  /** Most and least recently used live slots, linked through next/prev. */
  private head = NONE
  private tail = NONE

  private keyHi = new Uint32Array(0)
  private keyLo = new Uint32Array(0)
  private next = new Int32Array(0)
  private prev = new Int32Array(0)
  /** now() when stored, for the TTL. */
  private stored = new Float64Array(0)
  private at = new Float64Array(0)
  private latency = new Float32Array(0)
  private flags = new Uint8Array(0)
  private errorId = new Uint16Array(0)
  /** Open addressing: slot + 1 at the key's position or after it, 0 for empty. */
  private index = new Int32Array(0)

  constructor(opts: OutcomeTableOptions) {
    this.maxEntries = Math.max(1, Math.floor(opts.maxEntries))
    this.ttlMs = opts.ttlMs
    this.now = opts.now
  }

  get size(): number {
    return this.live
  }

  /** Stores the outcome under `key`, as the most recently used; the TTL starts again. */
  set(key: Fingerprint, flags: number, latencyMs: number, at: number, error: string | undefined): void {
    let slot = this.find(key)
    if (slot === NONE) {
      slot = this.allocate()
      this.keyHi[slot] = key.hi
      this.keyLo[slot] = key.lo
      this.insertIndex(slot)
      this.pushFront(slot)
      this.live++
    } else {
      this.moveToFront(slot)
    }
    this.stored[slot] = this.now()
    this.at[slot] = at
    this.latency[slot] = latencyMs
    this.flags[slot] = flags
    this.errorId[slot] = this.errors.idOf(error, slot)
  }

  /** The outcome under `key`, made the most recently used; undefined if absent or expired. */
  get(key: Fingerprint): StoredOutcome | undefined {
    const slot = this.liveSlot(key)
    if (slot === NONE) return undefined
    this.moveToFront(slot)
    return {
      flags: this.flags[slot],
      latencyMs: this.latency[slot],
      at: this.at[slot],
      error: this.errors.textOf(this.errorId[slot], slot),
    }
  }

  /** Just the flags under `key`, made the most recently used; undefined if absent or expired. */
  flagsOf(key: Fingerprint): number | undefined {
    const slot = this.liveSlot(key)
    if (slot === NONE) return undefined
    this.moveToFront(slot)
    return this.flags[slot]
  }

  clear(): void {
    this.capacity = this.used = this.live = 0
    this.free = this.head = this.tail = NONE
    this.resize(0)
    this.errors.clear()
  }

  // -------------------------------------------------------------------------------------

  private liveSlot(key: Fingerprint): number {
    const slot = this.find(key)
    if (slot === NONE) return NONE
    if (this.now() - this.stored[slot] > this.ttlMs) {
      this.remove(slot)
      return NONE
    }
    return slot
  }

  private expired(slot: number): boolean {
    return this.now() - this.stored[slot] > this.ttlMs
  }

  private home(hi: number): number {
    return hi % this.index.length
  }

  private find(key: Fingerprint): number {
    const n = this.index.length
    if (n === 0) return NONE
    for (let i = this.home(key.hi); ; i = i + 1 === n ? 0 : i + 1) {
      const entry = this.index[i]
      if (entry === 0) return NONE
      const slot = entry - 1
      if (this.keyHi[slot] === key.hi && this.keyLo[slot] === key.lo) return slot
    }
  }

  private insertIndex(slot: number): void {
    const n = this.index.length
    let i = this.home(this.keyHi[slot])
    while (this.index[i] !== 0) i = i + 1 === n ? 0 : i + 1
    this.index[i] = slot + 1
  }

  /** Backward-shift deletion: the probe runs after the hole stay unbroken, no tombstones. */
  private removeIndex(slot: number): void {
    const n = this.index.length
    let hole = this.home(this.keyHi[slot])
    while (this.index[hole] !== slot + 1) hole = hole + 1 === n ? 0 : hole + 1
    for (let j = hole + 1 === n ? 0 : hole + 1; this.index[j] !== 0; j = j + 1 === n ? 0 : j + 1) {
      const k = this.home(this.keyHi[this.index[j] - 1])
      // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
      const homeBetween = hole <= j ? hole < k && k <= j : hole < k || k <= j
      if (!homeBetween) {
        this.index[hole] = this.index[j]
        hole = j
      }
    }
    this.index[hole] = 0
  }

  private allocate(): number {
    if (this.free !== NONE) {
      const slot = this.free
      this.free = this.next[slot]
      return slot
    }
    // An expired entry at the cold end goes before a live one is evicted.
    if (this.tail !== NONE && this.expired(this.tail)) {
      const slot = this.tail
      this.remove(slot)
      return this.allocate()
    }
    if (this.used === this.capacity && this.capacity < this.maxEntries) {
      this.resize(Math.min(this.maxEntries, Math.max(FIRST_CAPACITY, this.capacity * 2)))
    }
    if (this.used < this.capacity) return this.used++
    const slot = this.tail
    this.remove(slot)
    return this.allocate()
  }

  private remove(slot: number): void {
    this.removeIndex(slot)
    this.unlink(slot)
    this.errors.free(slot)
    this.next[slot] = this.free
    this.free = slot
    this.live--
  }

  private pushFront(slot: number): void {
    this.prev[slot] = NONE
    this.next[slot] = this.head
    if (this.head !== NONE) this.prev[this.head] = slot
    this.head = slot
    if (this.tail === NONE) this.tail = slot
  }

  private unlink(slot: number): void {
    const p = this.prev[slot]
    const n = this.next[slot]
    if (p !== NONE) this.next[p] = n
    else this.head = n
    if (n !== NONE) this.prev[n] = p
    else this.tail = p
  }

  private moveToFront(slot: number): void {
    if (this.head === slot) return
    this.unlink(slot)
    this.pushFront(slot)
  }

  /** New arrays of `capacity` slots, the old slots copied, the index rebuilt. */
  private resize(capacity: number): void {
    const grow = <
      T extends Uint32Array | Int32Array | Float64Array | Float32Array | Uint8Array | Uint16Array,
    >(
      old: T,
      make: new (n: number) => T,
    ): T => {
      const a = new make(capacity)
      a.set(old.subarray(0, Math.min(old.length, capacity)))
      return a
    }
    this.keyHi = grow(this.keyHi, Uint32Array)
    this.keyLo = grow(this.keyLo, Uint32Array)
    this.next = grow(this.next, Int32Array)
    this.prev = grow(this.prev, Int32Array)
    this.stored = grow(this.stored, Float64Array)
    this.at = grow(this.at, Float64Array)
    this.latency = grow(this.latency, Float32Array)
    this.flags = grow(this.flags, Uint8Array)
    this.errorId = grow(this.errorId, Uint16Array)
    this.capacity = capacity
    // A load of at most 2/3 keeps probe runs short.
    this.index = new Int32Array(capacity === 0 ? 0 : Math.ceil(capacity * 1.5) + 1)
    for (let s = this.head; s !== NONE; s = this.next[s]) this.insertIndex(s)
  }
}
