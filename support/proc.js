'use strict'

// Read-only looks at processes through Linux /proc: alive or not, memory, CPU time, open fds.

const fs = require('node:fs')
const path = require('node:path')

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and ')'), or null. */
function statFields(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

/**
 * [ppid, start time] of a live (not zombie) process, or null. The start time tells a reused
 * pid apart.
 * @param {number} pid
 * @returns {[number, string] | null}
 */
function procInfo(pid) {
  const fields = statFields(pid)
  if (!fields || fields[0] === 'Z') return null
  return [Number(fields[1]), fields[19]]
}

/** pid → [ppid, start time] for every process (empty where there is no /proc). */
function processTable() {
  const table = new Map()
  let entries
  try {
    entries = fs.readdirSync('/proc')
  } catch {
    return table
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue
    const info = procInfo(Number(name))
    if (info) table.set(Number(name), info)
  }
  return table
}

/**
 * True while the process exists (and, given `startTime`, is the same one).
 * @param {number} pid
 * @param {string} [startTime]
 */
function isAlive(pid, startTime) {
  const info = procInfo(pid)
  if (info) return startTime === undefined || info[1] === startTime
  if (fs.existsSync('/proc/self')) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A kB value from /proc/<pid>/status (VmHWM, VmRSS), or NaN. */
function procStatusKb(pid, key) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)
    return m ? Number(m[1]) : NaN
  } catch {
    return NaN
  }
}

/**
 * Peak and current resident set size of a process, in KiB (VmHWM, VmRSS).
 * @param {number} pid
 * @returns {{peakKib: number, rssKib: number}}
 */
function memory(pid) {
  return { peakKib: procStatusKb(pid, 'VmHWM'), rssKib: procStatusKb(pid, 'VmRSS') }
}

/**
 * The user and the system (kernel) CPU time a process has used so far, in ms each; NaN each
 * when it cannot be read. User time is JavaScript, GC and native code in user space; system
 * time is the kernel's work on the process's behalf (syscalls, the network stack).
 * @param {number} pid
 * @returns {{userMs: number, systemMs: number}}
 */
function procCpuTimesMs(pid) {
  const fields = statFields(pid)
  // utime and stime, fields 14 and 15 of stat(5), in clock ticks; Linux reports them at 100 Hz.
  return fields
    ? { userMs: Number(fields[11]) * 10, systemMs: Number(fields[12]) * 10 }
    : { userMs: NaN, systemMs: NaN }
}

/** inode → {proto, state} for the sockets in the process's network namespace. */
function socketTable(pid) {
  const table = new Map()
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    let text
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${proto}`, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      table.set(f[9], { proto: proto.replace('6', ''), state: f[3] })
    }
  }
  return table
}

/**
 * The open file descriptors of a process, by kind: TCP listening, other TCP (connected or
 * connecting), UDP, other sockets (unix), pipes, anon inodes (epoll, eventfd …), files.
 * @param {number} pid
 * @returns {{total: number, kinds: Object<string, number>}}
 */
function fdSnapshot(pid) {
  const dir = `/proc/${pid}/fd`
  const kinds = { 'tcp-listen': 0, 'tcp-open': 0, udp: 0, 'other-socket': 0, pipe: 0, anon: 0, file: 0 }
  const sockets = socketTable(pid)
  let total = 0
  for (const fd of fs.readdirSync(dir)) {
    let target
    try {
      target = fs.readlinkSync(path.join(dir, fd))
    } catch {
      continue // closed between readdir and readlink
    }
    total++
    const sock = /^socket:\[(\d+)\]$/.exec(target)
    if (sock) {
      const s = sockets.get(sock[1])
      if (!s) kinds['other-socket']++
      else if (s.proto === 'udp') kinds.udp++
      else if (s.state === '0A') kinds['tcp-listen']++
      else kinds['tcp-open']++
    } else if (target.startsWith('pipe:')) kinds.pipe++
    else if (target.startsWith('anon_inode:')) kinds.anon++
    else kinds.file++
  }
  return { total, kinds }
}

module.exports = { procInfo, processTable, isAlive, procStatusKb, memory, procCpuTimesMs, fdSnapshot }
