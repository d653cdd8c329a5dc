/**
 * The kandinsky-nb server extension's read-only run-log API (`<base_url>/kandinsky-nb/api/`), typed.
 *
 * Every call goes through ServerConnection, so it carries the Jupyter token/XSRF like the rest of JupyterLab;
 * `<img>` URLs ride on the login cookie. The browser only ever names runs by id and sweeps by name: the server
 * decides where the log is.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IRun {
  id: number;
  created_utc: string;
  finished_utc: string | null;
  status: string;
  engine: string;
  demo: boolean;
  prompt: string | null;
  width: number | null;
  height: number | null;
  steps: number | null;
  CFGScale: number | null;
  scheduler: string | null;
  seed: number | null;
  cost_usd: number | null;
  latency_s: number | null;
  sweep_id: string | null;
  sweep_cell: string | null;
  error_type: string | null;
  error_message: string | null;
  has_image: boolean;
}

export interface IRunDetail extends IRun {
  task_uuid: string;
  request: Record<string, unknown>;
  response: unknown;
  details: unknown;
  code: string;
  [column: string]: unknown;
}

export interface IRunsPage {
  total: number;
  total_cost_usd: number;
  limit: number;
  offset: number;
  runs: IRun[];
  revision: string;
}

export interface IStatus {
  home: string;
  db: string;
  exists: boolean;
  runs: number;
  latest_id: number | null;
  revision: string;
  schema: { version: number; known_version: number; current: boolean };
  toolkit_version: string;
}

export interface ISpend {
  runs: number;
  images: number;
  cost_usd: number;
}

export interface ICost {
  session: ISpend;
  today: ISpend;
  all: ISpend;
  session_started_utc: string;
}

export interface ISweepSummary {
  name: string;
  created_utc: string;
  cells: number;
  states: Record<string, number>;
  images: number;
  spent_usd: number;
}

export interface ISweepCell {
  key: string;
  coords: Record<string, unknown>;
  state: 'ok' | 'pending' | 'failed';
  run: IRun;
  attempts: number;
  spent_usd: number;
}

export interface ISweep {
  name: string;
  definition: unknown;
  axes: { name: string; values: unknown[] }[];
  cells: ISweepCell[];
  states: Record<string, number>;
  spent_usd: number;
  failed: ISweepCell[];
}

/** Filters the sidebar sends; empty values are left out. */
export interface IRunQuery {
  status?: string;
  engine?: string;
  sweep?: string;
  q?: string;
  since?: string;
  until?: string;
  limit?: number;
  offset?: number;
}

export class RunLogAPI {
  constructor(readonly settings: ServerConnection.ISettings) {}

  url(...parts: string[]): string {
    return URLExt.join(this.settings.baseUrl, 'kandinsky-nb', 'api', ...parts.map(encodeURIComponent));
  }

  async get<T>(parts: string[], query: Record<string, string | number | undefined> = {}): Promise<T> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== '') {
        params.set(key, String(value));
      }
    }
    const search = params.toString();
    const url = this.url(...parts) + (search ? `?${search}` : '');
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, {}, this.settings);
    } catch (error) {
      throw new ServerConnection.NetworkError(error as TypeError);
    }
    const text = await response.text();
    let data: any = text;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      // not JSON: keep the text for the error message
    }
    if (!response.ok) {
      throw new ServerConnection.ResponseError(response, data?.message ?? String(data));
    }
    return data as T;
  }

  /** A cheap poll: `no_track_activity` keeps a watching sidebar from holding an idle server awake. */
  status(): Promise<IStatus> {
    return this.get<IStatus>(['status'], { no_track_activity: 1 });
  }

  /** What live views poll: a stat of the log's files on the server, no query. */
  async revision(): Promise<string> {
    return (await this.get<{ revision: string }>(['revision'], { no_track_activity: 1 })).revision;
  }

  runs(query: IRunQuery): Promise<IRunsPage> {
    return this.get<IRunsPage>(['runs'], query as Record<string, string | number | undefined>);
  }

  run(id: number): Promise<IRunDetail> {
    return this.get<IRunDetail>(['runs', String(id)]);
  }

  sweeps(): Promise<{ sweeps: ISweepSummary[] }> {
    return this.get(['sweeps']);
  }

  sweep(name: string): Promise<ISweep> {
    return this.get<ISweep>(['sweeps', name]);
  }

  cost(): Promise<ICost> {
    return this.get<ICost>(['cost'], { no_track_activity: 1 });
  }

  imageURL(id: number): string {
    return this.url('runs', String(id), 'image');
  }

  thumbnailURL(id: number, size = 96): string {
    return `${this.url('runs', String(id), 'thumbnail')}?size=${size}`;
  }
}

/** Format helpers shared by the views (one place for how a number is shown). */
export const fmt = {
  /** Dollars with cents for large sums and four decimals for the fractions of a cent single images cost. */
  usd(value: number | null | undefined): string {
    if (value === null || value === undefined) {
      return '–';
    }
    return `$${value.toFixed(Math.abs(value) >= 10 ? 2 : 4)}`;
  },
  seconds(value: number | null | undefined): string {
    return value === null || value === undefined ? '–' : `${value.toFixed(1)} s`;
  },
  value(value: unknown): string {
    if (value === null || value === undefined) {
      return '–';
    }
    if (typeof value === 'number' && !Number.isInteger(value)) {
      return String(Number(value.toPrecision(4)));
    }
    return typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
};
