'use strict'

// A loopback black hole: a connect() to it hangs, as to an address whose SYNs are dropped.

const { spawn } = require('node:child_process')

/** Upper bound for the life of a black-hole helper process, whatever happens to the caller. */
const BLACK_HOLE_MAX_MS = 10 * 60 * 1000

// The helper: binds, listen(0), fills the accept queue with non-blocking connects to
// itself, prints the port, then never accept()s. It exits when its stdin closes (the
// parent closed it or died) or after argv[4] seconds at the latest.
const BLACK_HOLE_PY = `
import select, socket, sys
host, port, fill, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(0)
port = s.getsockname()[1]
held = []
for _ in range(fill):
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect((host, port))
    except BlockingIOError:
        pass
    held.append(c)
print(port, flush=True)
select.select([sys.stdin], [], [], limit)
`

/**
 * Starts a loopback black hole: a listening TCP socket whose accept queue is full and never
 * drained, so new SYNs are dropped and a connect() to it hangs until the caller gives up.
 * Node (libuv) always accept()s on a listening socket, so the socket lives in a small python3
 * child that never calls accept(); close() ends that child by PID.
 * @param {{host?: string, port?: number}} [opts]
 * @returns {Promise<{host: string, port: number, pid: number, close: () => Promise<void>}>}
 */
function startBlackHole({ host = '::1', port = 0 } = {}) {
  const fill = 3
  const child = spawn(
    'python3',
    ['-c', BLACK_HOLE_PY, host, String(port), String(fill), String(BLACK_HOLE_MAX_MS / 1000)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  )
  let stderr = ''
  let exited = child.exitCode !== null
  const exitPromise = new Promise((resolve) => {
    child.once('exit', () => {
      exited = true
      resolve()
    })
  })
  child.stderr.on('data', (d) => (stderr += d))
  child.stdin.on('error', () => {})

  let closing = null
  const close = () => {
    if (!closing) {
      closing = (async () => {
        if (!exited) {
          child.stdin.end()
          const t = setTimeout(() => {
            if (exited) return
            try {
              process.kill(child.pid, 'SIGKILL')
            } catch {
              // already gone
            }
          }, 2000)
          await exitPromise
          clearTimeout(t)
        }
      })()
    }
    return closing
  }

  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      close().then(() => reject(new Error(`black hole on ${host}:${port} did not start: ${stderr}`)))
    }, 10000)
    child.once('error', (err) => {
      clearTimeout(timer)
      exited = true
      reject(new Error(`black hole: cannot run python3: ${err.message}`))
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`black hole on ${host}:${port} exited (${code}): ${stderr.trim()}`))
    })
    child.stdout.on('data', (d) => {
      out += d
      const m = /^(\d+)\n/.exec(out)
      if (!m) return
      clearTimeout(timer)
      resolve({ host, port: Number(m[1]), pid: child.pid, close })
    })
  })
}

module.exports = { startBlackHole }
