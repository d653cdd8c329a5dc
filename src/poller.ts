/**
 * Live refresh that costs nothing while nobody looks: a timer that runs only while its widget is visible and the
 * browser tab is in front, and that asks the server for the log's revision (a stat, no query) before reloading.
 */
export class RevisionPoller {
  constructor(
    private readonly revision: () => Promise<string>,
    private readonly onChange: () => Promise<void>
  ) {
    document.addEventListener('visibilitychange', this._onVisibility);
  }

  /** Seconds between checks; 0 stops live refresh. */
  set intervalSeconds(value: number) {
    this._seconds = value;
    if (this._running) {
      this._schedule();
    }
  }

  start(): void {
    this._running = true;
    this._schedule();
  }

  stop(): void {
    this._running = false;
    this._clear();
  }

  dispose(): void {
    this.stop();
    document.removeEventListener('visibilitychange', this._onVisibility);
  }

  /** Remember the revision a view just rendered, so the next tick does not reload it again. */
  seen(revision: string): void {
    this._last = revision;
  }

  private _schedule(): void {
    this._clear();
    if (this._running && this._seconds > 0 && document.visibilityState !== 'hidden') {
      this._timer = window.setTimeout(() => void this._tick(), this._seconds * 1000);
    }
  }

  private async _tick(): Promise<void> {
    try {
      const revision = await this.revision();
      if (revision !== this._last) {
        this._last = revision;
        await this.onChange();
      }
    } catch {
      // the server may be restarting: try again at the next tick
    }
    this._schedule();
  }

  private _clear(): void {
    if (this._timer !== undefined) {
      window.clearTimeout(this._timer);
      this._timer = undefined;
    }
  }

  private _onVisibility = (): void => {
    if (this._running) {
      this._schedule();
    }
  };

  private _seconds = 3;
  private _running = false;
  private _timer: number | undefined;
  private _last = '';
}
