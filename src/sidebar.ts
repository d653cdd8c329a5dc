/**
 * The "Kandinsky runs" sidebar: a page of runs, newest first, with lazy thumbnails, filters and pages; live while
 * visible. Rows carry `data-run-id` (and `data-sweep`) so the context-menu commands know which run was clicked.
 */
import { Widget } from '@lumino/widgets';
import { Signal } from '@lumino/signaling';

import { IRun, IRunQuery, IRunsPage, RunLogAPI, fmt } from './api';
import { el } from './dom';
import { RevisionPoller } from './poller';

const STATUSES = ['', 'ok', 'failed', 'submitted', 'unanswered', 'cancelled'];
const MIN_SEARCH = 3;

export class RunsPanel extends Widget {
  constructor(private readonly api: RunLogAPI) {
    super();
    this.id = 'kandinsky-nb-runs';
    this.addClass('knb-RunsPanel');
    this.title.caption = 'Kandinsky runs';

    this._header = el('div', 'knb-RunsPanel-header');
    const title = el('span', 'knb-RunsPanel-title', 'Kandinsky runs');
    this._summary = el('span', 'knb-RunsPanel-summary');
    const refresh = el('button', 'knb-RunsPanel-refresh jp-Button jp-mod-minimal', '⟳') as HTMLButtonElement;
    refresh.title = 'Refresh';
    refresh.onclick = () => void this.refresh();
    this._header.append(title, this._summary, refresh);

    const filters = el('div', 'knb-RunsPanel-filters');
    this._search = el('input', 'knb-filter-q jp-mod-styled') as HTMLInputElement;
    this._search.type = 'search';
    this._search.placeholder = 'Search prompts';
    this._search.oninput = () => this._debouncedReload();
    this._status = el('select', 'knb-filter-status jp-mod-styled') as HTMLSelectElement;
    for (const status of STATUSES) {
      const option = el('option', '', status || 'any status') as HTMLOptionElement;
      option.value = status;
      this._status.append(option);
    }
    this._status.onchange = () => this._reloadFromStart();
    this._sweep = el('select', 'knb-filter-sweep jp-mod-styled') as HTMLSelectElement;
    this._sweep.onchange = () => this._reloadFromStart();
    filters.append(this._search, this._status, this._sweep);

    this._list = el('div', 'knb-RunsPanel-list');
    this._list.addEventListener('click', this._onClick);
    this._pager = el('div', 'knb-RunsPanel-pager');
    this._message = el('div', 'knb-RunsPanel-message');
    this.node.append(this._header, filters, this._message, this._list, this._pager);

    this._poller = new RevisionPoller(
      () => this.api.revision(),
      () => this.refresh()
    );
  }

  /** Selected run ids (click selects one; Ctrl/Cmd/Shift-click adds a second, for compare). */
  get selection(): number[] {
    return [...this._selected];
  }

  get selectionChanged(): Signal<this, number[]> {
    return this._selectionChanged;
  }

  set pageSize(value: number) {
    this._pageSize = value;
  }

  set refreshSeconds(value: number) {
    this._poller.intervalSeconds = value;
  }

  /** The run shown in a row (for the commands), if it is on the current page. */
  runById(id: number): IRun | undefined {
    return this._page?.runs.find(run => run.id === id);
  }

  async refresh(): Promise<void> {
    const text = this._search.value.trim();
    const query: IRunQuery = {
      // The server's prompt index matches 3 characters or more; a shorter text is not a filter yet.
      q: text.length >= MIN_SEARCH ? text : '',
      status: this._status.value,
      sweep: this._sweep.value,
      limit: this._pageSize,
      offset: this._offset
    };
    try {
      const [page, sweeps] = await Promise.all([this.api.runs(query), this.api.sweeps()]);
      this._poller.seen(page.revision);
      this._renderSweepOptions(sweeps.sweeps.map(s => s.name));
      this._render(page);
      this._message.textContent =
        text.length > 0 && text.length < MIN_SEARCH ? `Type ${MIN_SEARCH} or more characters to search prompts` : '';
      this._message.classList.toggle('knb-mod-hint', text.length > 0 && text.length < MIN_SEARCH);
    } catch (error) {
      this._message.classList.remove('knb-mod-hint');
      this._message.textContent = `Could not read the run log: ${(error as Error).message ?? error}`;
    }
  }

  dispose(): void {
    this._poller.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.refresh();
    this._poller.start();
  }

  protected onAfterHide(): void {
    // A hidden sidebar polls nothing: a running sweep never pays for it.
    this._poller.stop();
  }

  private _reloadFromStart(): void {
    this._offset = 0;
    void this.refresh();
  }

  private _debouncedReload(): void {
    window.clearTimeout(this._debounce);
    this._debounce = window.setTimeout(() => this._reloadFromStart(), 250);
  }

  private _renderSweepOptions(names: string[]): void {
    const current = this._sweep.value;
    const known = [...this._sweep.options].map(o => o.value);
    const wanted = ['', ...names];
    if (known.join('\n') === wanted.join('\n')) {
      return;
    }
    this._sweep.replaceChildren(
      ...wanted.map(name => {
        const option = el('option', '', name || 'any sweep') as HTMLOptionElement;
        option.value = name;
        return option;
      })
    );
    this._sweep.value = wanted.includes(current) ? current : '';
  }

  private _render(page: IRunsPage): void {
    this._page = page;
    this._summary.textContent = `${page.total} runs · ${fmt.usd(page.total_cost_usd)}`;
    const rows = page.runs.map(run => this._row(run));
    if (rows.length === 0) {
      rows.push(el('div', 'knb-RunsPanel-empty', 'No runs match. Generate one, or clear the filters.'));
    }
    this._list.replaceChildren(...rows);

    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = page.offset + page.runs.length;
    const previous = el('button', 'jp-Button jp-mod-minimal knb-page-previous', '‹ Newer') as HTMLButtonElement;
    previous.disabled = page.offset === 0;
    previous.onclick = () => {
      this._offset = Math.max(0, this._offset - this._pageSize);
      void this.refresh();
    };
    const next = el('button', 'jp-Button jp-mod-minimal knb-page-next', 'Older ›') as HTMLButtonElement;
    next.disabled = last >= page.total;
    next.onclick = () => {
      this._offset += this._pageSize;
      void this.refresh();
    };
    this._pager.replaceChildren(previous, el('span', 'knb-page-range', `${first}–${last} of ${page.total}`), next);
  }

  private _row(run: IRun): HTMLElement {
    const row = el('div', `knb-RunRow knb-status-${run.status}`);
    row.dataset.runId = String(run.id);
    if (run.sweep_id) {
      row.dataset.sweep = run.sweep_id;
    }
    row.classList.toggle('knb-mod-selected', this._selected.includes(run.id));
    row.title = `run ${run.id} · ${run.created_utc}${run.sweep_id ? ` · sweep ${run.sweep_id}` : ''}` +
      (run.error_message ? `\n${run.error_type}: ${run.error_message}` : '');

    const thumb = el('div', 'knb-RunRow-thumb');
    if (run.has_image) {
      const img = el('img', 'knb-thumb') as HTMLImageElement;
      img.loading = 'lazy'; // thousands of runs: only the rows on screen fetch their thumbnail
      img.decoding = 'async';
      img.alt = `run ${run.id}`;
      img.src = this.api.thumbnailURL(run.id);
      thumb.append(img);
    }
    const body = el('div', 'knb-RunRow-body');
    const line1 = el('div', 'knb-RunRow-line1');
    line1.append(
      el('span', 'knb-RunRow-id', `#${run.id}`),
      el('span', `knb-RunRow-status knb-status-${run.status}`, run.status),
      el('span', 'knb-RunRow-prompt', run.prompt ?? '')
    );
    const params = [
      run.steps !== null ? `${run.steps} steps` : null,
      run.CFGScale !== null ? `CFG ${run.CFGScale}` : null,
      run.scheduler,
      run.seed !== null ? `seed ${run.seed}` : null,
      run.width && run.height ? `${run.width}×${run.height}` : null
    ].filter(Boolean);
    const line2 = el('div', 'knb-RunRow-params', params.join(' · '));
    const line3 = el('div', 'knb-RunRow-meta');
    line3.append(
      el('span', 'knb-RunRow-cost', fmt.usd(run.cost_usd)),
      el('span', 'knb-RunRow-latency', fmt.seconds(run.latency_s)),
      el('span', 'knb-RunRow-engine', run.engine)
    );
    if (run.demo) {
      const badge = el('span', 'knb-badge knb-badge-demo', 'demo');
      badge.title = 'Demo weights: this image is noise';
      line3.append(badge);
    }
    body.append(line1, line2, line3);
    row.append(thumb, body);
    return row;
  }

  private _onClick = (event: MouseEvent): void => {
    const row = (event.target as HTMLElement).closest<HTMLElement>('.knb-RunRow');
    if (!row?.dataset.runId) {
      return;
    }
    const id = Number(row.dataset.runId);
    if (event.ctrlKey || event.metaKey || event.shiftKey) {
      this._selected = this._selected.includes(id)
        ? this._selected.filter(s => s !== id)
        : [...this._selected, id].slice(-2);
    } else {
      this._selected = [id];
    }
    for (const node of this._list.querySelectorAll<HTMLElement>('.knb-RunRow')) {
      node.classList.toggle('knb-mod-selected', this._selected.includes(Number(node.dataset.runId)));
    }
    this._selectionChanged.emit(this.selection);
  };

  private _header: HTMLElement;
  private _summary: HTMLElement;
  private _search: HTMLInputElement;
  private _status: HTMLSelectElement;
  private _sweep: HTMLSelectElement;
  private _list: HTMLElement;
  private _pager: HTMLElement;
  private _message: HTMLElement;
  private _poller: RevisionPoller;
  private _page: IRunsPage | null = null;
  private _offset = 0;
  private _pageSize = 50;
  private _selected: number[] = [];
  private _debounce: number | undefined;
  private _selectionChanged = new Signal<this, number[]>(this);
}
