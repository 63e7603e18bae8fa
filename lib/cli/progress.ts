// Progress on stderr while a phase takes a while: a plain line per phase, or on a terminal a
// spinner wiped before the result. Nothing for a quick phase.

export interface CliOutput {
  write(chunk: string): unknown
}

/** A phase shows progress only when it takes longer than this. */
const PROGRESS_DELAY_MS = 300
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']

export class Progress {
  private text = ''
  private shown = false
  private frame = 0
  private delay: NodeJS.Timeout | undefined
  private spin: NodeJS.Timeout | undefined

  constructor(
    private readonly out: CliOutput,
    private readonly tty: boolean,
  ) {}

  /** Starts a phase or renames the running one; nothing is written for a quick phase. */
  update(text: string): void {
    if (text === this.text) return
    this.text = text
    if (this.shown) {
      if (this.tty) this.draw()
      else this.out.write(`${text}\n`)
      return
    }
    if (!this.delay) this.delay = setTimeout(() => this.show(), PROGRESS_DELAY_MS)
  }

  private show(): void {
    this.delay = undefined
    this.shown = true
    if (!this.tty) {
      this.out.write(`${this.text}\n`)
      return
    }
    this.draw()
    this.spin = setInterval(() => this.draw(), 80)
  }

  private draw(): void {
    this.out.write(`\r${SPINNER[this.frame++ % SPINNER.length]} ${this.text}\x1b[K`)
  }

  /** Ends the phase; a spinner line is wiped so the result starts on a clean line. */
  end(): void {
    clearTimeout(this.delay)
    clearInterval(this.spin)
    if (this.shown && this.tty) this.out.write('\r\x1b[K')
    this.delay = this.spin = undefined
    this.shown = false
    this.text = ''
  }
}
