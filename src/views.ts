/**
 * Main-area views: one run's image full size, two runs compared (side by side or wipe, parameter diff
 * highlighted), and a sweep (contact sheet by its axes, each cell's state, spend, failed cells listed).
 */
import { Widget } from '@lumino/widgets';

import { IRunDetail, ISweep, ISweepCell, RunLogAPI, fmt } from './api';
import { RevisionPoller } from './poller';
import { el } from './dom';

/** One run's image at full size, with its prompt and parameters under it. */
export class ImageView extends Widget {
  constructor(api: RunLogAPI, run: IRunDetail) {
    super();
    this.addClass('knb-ImageView');
    this.id = `kandinsky-nb-image-${run.id}`;
    this.title.label = `Run ${run.id}`;
    this.title.caption = run.prompt ?? '';
    this.title.closable = true;
    const img = el('img', 'knb-ImageView-image') as HTMLImageElement;
    img.src = api.imageURL(run.id);
    img.alt = run.prompt ?? `run ${run.id}`;
    const caption = el('div', 'knb-ImageView-caption');
    caption.append(
      el('div', 'knb-ImageView-prompt', run.prompt ?? ''),
      el(
        'div',
        'knb-ImageView-params',
        `${run.width}×${run.height} · ${run.steps} steps · CFG ${run.CFGScale} · ${run.scheduler ?? 'default'} · ` +
          `seed ${run.seed} · ${fmt.usd(run.cost_usd)} · ${fmt.seconds(run.latency_s)} · ${run.engine}` +
          (run.demo ? ' · demo weights: this image is noise' : '')
      )
    );
    this.node.append(img, caption);
  }
}

// The parameters a comparison lists first, then every other request field either run has.
const COMPARED = ['positivePrompt', 'negativePrompt', 'width', 'height', 'steps', 'CFGScale', 'scheduler', 'seed'];

/** Two runs: images side by side or as a wipe, and every parameter in a table with the differences highlighted. */
export class CompareView extends Widget {
  constructor(api: RunLogAPI, left: IRunDetail, right: IRunDetail) {
    super();
    this.addClass('knb-CompareView');
    this.id = `kandinsky-nb-compare-${left.id}-${right.id}`;
    this.title.label = `Compare ${left.id} · ${right.id}`;
    this.title.closable = true;

    const modes = el('div', 'knb-CompareView-modes');
    const sideBySide = el('button', 'jp-Button knb-mode-side knb-mod-active', 'Side by side') as HTMLButtonElement;
    const wipe = el('button', 'jp-Button knb-mode-wipe', 'Wipe') as HTMLButtonElement;
    modes.append(sideBySide, wipe);

    const images = el('div', 'knb-CompareView-images knb-mod-side');
    const figure = (run: IRunDetail, side: string) => {
      const box = el('figure', `knb-CompareView-figure knb-side-${side}`);
      if (run.has_image) {
        const img = el('img', '') as HTMLImageElement;
        img.src = api.imageURL(run.id);
        img.alt = `run ${run.id}`;
        box.append(img);
      } else {
        box.append(el('div', 'knb-CompareView-noimage', `run ${run.id}: ${run.status}, no image`));
      }
      box.append(el('figcaption', '', `#${run.id}`));
      return box;
    };
    const leftFigure = figure(left, 'left');
    const rightFigure = figure(right, 'right');
    const slider = el('input', 'knb-CompareView-slider') as HTMLInputElement;
    slider.type = 'range';
    slider.min = '0';
    slider.max = '100';
    slider.value = '50';
    slider.title = 'Wipe position';
    slider.oninput = () => {
      // The right image lies over the left one; clipping it reveals the left image left of the line.
      rightFigure.style.clipPath = `inset(0 0 0 ${slider.value}%)`;
    };
    images.append(leftFigure, rightFigure);
    const setMode = (mode: 'side' | 'wipe') => {
      images.classList.toggle('knb-mod-side', mode === 'side');
      images.classList.toggle('knb-mod-wipe', mode === 'wipe');
      sideBySide.classList.toggle('knb-mod-active', mode === 'side');
      wipe.classList.toggle('knb-mod-active', mode === 'wipe');
      slider.hidden = mode !== 'wipe';
      rightFigure.style.clipPath = mode === 'wipe' ? `inset(0 0 0 ${slider.value}%)` : '';
    };
    sideBySide.onclick = () => setMode('side');
    wipe.onclick = () => setMode('wipe');
    slider.hidden = true;

    const table = el('table', 'knb-CompareView-diff');
    const head = el('tr');
    head.append(el('th', '', 'parameter'), el('th', '', `#${left.id}`), el('th', '', `#${right.id}`));
    table.append(head);
    const keys = [
      ...COMPARED,
      ...new Set([...Object.keys(left.request ?? {}), ...Object.keys(right.request ?? {})])
    ].filter((key, index, all) => all.indexOf(key) === index && key !== 'taskUUID' && key !== 'taskType');
    const rows: [string, unknown, unknown][] = keys.map(key => [key, left.request?.[key], right.request?.[key]]);
    // The seed the engine used, when the request left it random.
    rows.push(['seed used', left.seed, right.seed]);
    // What each run came to: shown, never marked as a difference (every run's time and latency differ), as in the
    // kernel's ComparisonView.
    const outcomes: [string, unknown, unknown][] = (
      ['status', 'engine', 'cost_usd', 'latency_s', 'created_utc'] as const
    ).map(key => [key, left[key], right[key]]);
    for (const [key, a, b] of [...rows, ...outcomes]) {
      const outcome = outcomes.some(([name]) => name === key);
      const row = el('tr', outcome ? 'knb-diff-row knb-diff-outcome' : 'knb-diff-row');
      row.dataset.parameter = key;
      row.classList.toggle('knb-mod-differs', !outcome && fmt.value(a) !== fmt.value(b));
      row.append(el('th', '', key), el('td', '', fmt.value(a)), el('td', '', fmt.value(b)));
      table.append(row);
    }
    const differing = rows.filter(([, a, b]) => fmt.value(a) !== fmt.value(b)).map(([key]) => key);
    const summary = el(
      'div',
      'knb-CompareView-summary',
      differing.length ? `Differs in: ${differing.join(', ')}` : 'Same parameters'
    );
    this.node.append(modes, slider, images, summary, table);
  }
}

/** A sweep: its contact sheet (first axis across, second down, one block per value of the rest), live. */
export class SweepView extends Widget {
  constructor(
    private readonly api: RunLogAPI,
    readonly sweepName: string
  ) {
    super();
    this.addClass('knb-SweepView');
    this.id = `kandinsky-nb-sweep-${sweepName.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    this.title.label = `Sweep ${sweepName}`;
    this.title.closable = true;
    this._poller = new RevisionPoller(
      () => this.api.revision(),
      () => this.refresh()
    );
  }

  set refreshSeconds(value: number) {
    this._poller.intervalSeconds = value;
  }

  async refresh(): Promise<void> {
    try {
      this._render(await this.api.sweep(this.sweepName));
    } catch (error) {
      this.node.replaceChildren(el('div', 'knb-error', `Could not read sweep ${this.sweepName}: ${error}`));
    }
  }

  dispose(): void {
    this._poller.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    this._poller.start();
  }

  protected onAfterAttach(): void {
    void this.refresh();
    this._poller.start();
  }

  protected onAfterHide(): void {
    this._poller.stop();
  }

  protected onBeforeDetach(): void {
    this._poller.stop();
  }

  private _render(sweep: ISweep): void {
    const header = el('div', 'knb-SweepView-header');
    const states = Object.entries(sweep.states)
      .map(([state, n]) => `${n} ${state}`)
      .join(' · ');
    header.append(
      el('h2', '', `Sweep ${sweep.name}`),
      el('div', 'knb-SweepView-summary', `${sweep.cells.length} cells: ${states} · spent ${fmt.usd(sweep.spent_usd)}`)
    );
    const [x, y, ...rest] = sweep.axes;
    const blocks = el('div', 'knb-SweepView-blocks');
    const groups = new Map<string, ISweepCell[]>();
    for (const cell of sweep.cells) {
      const key = rest.map(axis => `${axis.name}=${fmt.value(cell.coords[axis.name])}`).join(', ');
      groups.set(key, [...(groups.get(key) ?? []), cell]);
    }
    for (const [label, cells] of groups) {
      const block = el('div', 'knb-SweepView-block');
      if (label) {
        block.append(el('h3', '', label));
      }
      const grid = el('table', 'knb-SweepView-grid');
      const xs = x ? x.values : [null];
      const ys = y ? y.values : [null];
      const head = el('tr');
      head.append(el('th', 'knb-axis-corner', [y?.name, x?.name].filter(Boolean).join(' \\ ')));
      for (const xv of xs) {
        head.append(el('th', 'knb-axis-x', x ? `${x.name}=${fmt.value(xv)}` : ''));
      }
      grid.append(head);
      for (const yv of ys) {
        const row = el('tr');
        row.append(el('th', 'knb-axis-y', y ? `${y.name}=${fmt.value(yv)}` : ''));
        for (const xv of xs) {
          const cell = cells.find(
            c => (!x || fmt.value(c.coords[x.name]) === fmt.value(xv)) && (!y || fmt.value(c.coords[y.name]) === fmt.value(yv))
          );
          row.append(this._cell(cell));
        }
        grid.append(row);
      }
      block.append(grid);
      blocks.append(block);
    }
    const failed = el('div', 'knb-SweepView-failed');
    if (sweep.failed.length) {
      failed.append(el('h3', '', `Failed cells (${sweep.failed.length})`));
      const list = el('ul');
      for (const cell of sweep.failed) {
        list.append(
          el('li', '', `${cell.key}: ${cell.run.error_type ?? 'error'}: ${cell.run.error_message ?? ''} (run ${cell.run.id})`)
        );
      }
      failed.append(list);
    }
    this.node.replaceChildren(header, blocks, failed);
  }

  private _cell(cell: ISweepCell | undefined): HTMLElement {
    const td = el('td', `knb-SweepView-cell knb-state-${cell?.state ?? 'new'}`);
    if (!cell) {
      td.append(el('div', 'knb-SweepView-placeholder', 'not run'));
      return td;
    }
    td.dataset.runId = String(cell.run.id);
    td.title = `${cell.key}\nrun ${cell.run.id} · ${cell.state} · ${fmt.usd(cell.spent_usd)}`;
    if (cell.run.has_image) {
      const img = el('img', 'knb-thumb') as HTMLImageElement;
      img.loading = 'lazy';
      img.src = this.api.thumbnailURL(cell.run.id, 160);
      td.append(img);
    } else {
      td.append(el('div', 'knb-SweepView-placeholder', cell.state));
    }
    return td;
  }

  private _poller: RevisionPoller;
}
