/**
 * The status-bar spend: this session, today (UTC) and in all, from the run log; warns as the spend in the budget's
 * scope nears the budget set in the settings editor, and marks it once past.
 */
import { Widget } from '@lumino/widgets';

import { ICost, RunLogAPI, fmt } from './api';
import { RevisionPoller } from './poller';
import { el } from './dom';

export interface IBudget {
  budgetUSD: number | null;
  budgetScope: 'session' | 'today' | 'all';
  warnAtFraction: number;
}

export class SpendStatus extends Widget {
  constructor(private readonly api: RunLogAPI) {
    super();
    this.addClass('knb-SpendStatus');
    this.addClass('jp-StatusBar-TextItem');
    this.node.textContent = 'Kandinsky: …';
    this._poller = new RevisionPoller(
      () => this.api.revision(),
      () => this.refresh()
    );
  }

  set budget(value: IBudget) {
    this._budget = value;
    if (this._cost) {
      this._render(this._cost);
    }
  }

  set refreshSeconds(value: number) {
    // The status bar is always on screen: check less often than the sidebar.
    this._poller.intervalSeconds = value > 0 ? Math.max(value, 5) : 0;
  }

  async refresh(): Promise<void> {
    try {
      this._render(await this.api.cost());
    } catch {
      this.node.textContent = 'Kandinsky: no run log';
    }
  }

  protected onAfterAttach(): void {
    void this.refresh();
    this._poller.start();
  }

  protected onBeforeDetach(): void {
    this._poller.stop();
  }

  dispose(): void {
    this._poller.dispose();
    super.dispose();
  }

  private _render(cost: ICost): void {
    this._cost = cost;
    const { budgetUSD, budgetScope, warnAtFraction } = this._budget;
    const spent = cost[budgetScope].cost_usd;
    const over = budgetUSD !== null && spent > budgetUSD;
    const near = budgetUSD !== null && !over && spent >= budgetUSD * warnAtFraction;
    this.node.classList.toggle('knb-mod-warn', near);
    this.node.classList.toggle('knb-mod-over', over);
    const text = el('span', 'knb-SpendStatus-text',
      `Kandinsky ${fmt.usd(cost.session.cost_usd)} session · ${fmt.usd(cost.today.cost_usd)} today · ` +
        `${fmt.usd(cost.all.cost_usd)} all`
    );
    const budgetText = budgetUSD === null ? 'no budget set' : `budget ${fmt.usd(budgetUSD)} (${budgetScope})`;
    this.node.replaceChildren(text);
    if (over || near) {
      this.node.append(el('span', 'knb-SpendStatus-flag', over ? ' · over budget' : ' · near budget'));
    }
    this.node.title =
      `Spend from the run log (Kandinsky 5.0 Image Lite)\n` +
      `this session: ${cost.session.runs} runs, ${fmt.usd(cost.session.cost_usd)}\n` +
      `today (UTC): ${cost.today.runs} runs, ${fmt.usd(cost.today.cost_usd)}\n` +
      `all: ${cost.all.runs} runs, ${fmt.usd(cost.all.cost_usd)}\n${budgetText}`;
  }

  private _poller: RevisionPoller;
  private _cost: ICost | null = null;
  private _budget: IBudget = { budgetUSD: null, budgetScope: 'today', warnAtFraction: 0.8 };
}
