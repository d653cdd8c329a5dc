/**
 * kandinsky-nb in JupyterLab 4 and Notebook 7: the "Kandinsky runs" sidebar, row actions (context menu and command
 * palette), compare / image / sweep views, spend in the status bar, and a launcher card / File > New entry.
 * Everything reads the server extension's read-only run-log API.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Clipboard, ICommandPalette, InputDialog, MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { RunLogAPI } from './api';
import { RunsPanel } from './sidebar';
import { IBudget, SpendStatus } from './spend';
import { CompareView, ImageView, SweepView } from './views';

const PLUGIN_ID = 'kandinsky-nb:plugin';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
  '<g class="jp-icon3" fill="#616161">' +
  '<circle cx="4.5" cy="4.5" r="3"/><rect x="9" y="1.5" width="5.5" height="5.5"/>' +
  '<path d="M1.5 14.5 L4.5 9 L7.5 14.5 Z"/><rect x="9" y="9" width="5.5" height="5.5" rx="2.75"/></g></svg>';
export const runsIcon = new LabIcon({ name: 'kandinsky-nb:runs', svgstr: ICON_SVG });

namespace CommandIDs {
  export const openRuns = 'kandinsky-nb:open-runs';
  export const refresh = 'kandinsky-nb:refresh-runs';
  export const insertCode = 'kandinsky-nb:insert-code';
  export const copyRequest = 'kandinsky-nb:copy-request';
  export const openImage = 'kandinsky-nb:open-image';
  export const compare = 'kandinsky-nb:compare';
  export const openSweep = 'kandinsky-nb:open-sweep';
  export const newNotebook = 'kandinsky-nb:new-notebook';
}

// The notebook "File > New > Kandinsky Notebook" creates: ready to generate on whatever engine the environment picks.
const STARTER_CELLS = [
  {
    cell_type: 'markdown',
    metadata: {},
    source:
      '# Kandinsky 5.0 Image Lite\n' +
      'The engine comes from the environment: `RUNWARE_API_KEY` → Runware, `KANDINSKY_NB_WEIGHTS` → local GPU, ' +
      'else the offline demo engine (its images are noise). Every run appears in the **Kandinsky runs** sidebar.'
  },
  {
    cell_type: 'code',
    metadata: {},
    execution_count: null,
    outputs: [],
    source: '%load_ext kandinsky_nb\nimport kandinsky_nb as knb\n\n%knb session'
  },
  {
    cell_type: 'code',
    metadata: {},
    execution_count: null,
    outputs: [],
    source: '%%knb generate --steps 20 --seed 7 --size 1024x1024\na red fox in snow, soft morning light'
  },
  {
    cell_type: 'code',
    metadata: {},
    execution_count: null,
    outputs: [],
    source: '%%knb sweep fox steps=10,20 CFGScale=3,5\na red fox in snow, soft morning light'
  }
];

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The kandinsky-nb run log in JupyterLab: sidebar, compare and sweep views, spend, launcher.',
  autoStart: true,
  optional: [
    ICommandPalette,
    ILayoutRestorer,
    INotebookTracker,
    ISettingRegistry,
    IStatusBar,
    ILauncher,
    IMainMenu
  ],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null,
    settingRegistry: ISettingRegistry | null,
    statusBar: IStatusBar | null,
    launcher: ILauncher | null,
    mainMenu: IMainMenu | null
  ) => {
    const api = new RunLogAPI(app.serviceManager.serverSettings);
    const panel = new RunsPanel(api);
    panel.title.icon = runsIcon;
    app.shell.add(panel, 'left', { rank: 850 });
    restorer?.add(panel, panel.id);

    const spend = new SpendStatus(api);
    if (statusBar) {
      statusBar.registerStatusItem('kandinsky-nb:spend', { item: spend, align: 'left', rank: 50 });
    }
    const sweepViews = new Set<SweepView>();

    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(settings => {
        const apply = () => {
          const seconds = settings.get('refreshSeconds').composite as number;
          panel.pageSize = settings.get('pageSize').composite as number;
          panel.refreshSeconds = seconds;
          spend.refreshSeconds = seconds;
          sweepViews.forEach(view => (view.refreshSeconds = seconds));
          spend.budget = {
            budgetUSD: settings.get('budgetUSD').composite as number | null,
            budgetScope: settings.get('budgetScope').composite as IBudget['budgetScope'],
            warnAtFraction: settings.get('warnAtFraction').composite as number
          };
        };
        apply();
        settings.changed.connect(apply);
      });
    }

    /** The run a command acts on: its argument, else the row right-clicked, else the sidebar's selection. */
    const runId = async (args: Record<string, unknown>): Promise<number | null> => {
      if (typeof args.id === 'number') {
        return args.id;
      }
      const row = app.contextMenuHitTest(node => node.classList?.contains('knb-RunRow'));
      if (row?.dataset.runId) {
        return Number(row.dataset.runId);
      }
      if (panel.selection.length) {
        return panel.selection[panel.selection.length - 1];
      }
      const answer = await InputDialog.getNumber({ title: 'Run id' });
      return answer.button.accept && answer.value !== null ? answer.value : null;
    };

    const addMain = (content: Widget) => {
      const widget = new MainAreaWidget({ content });
      widget.title.label = content.title.label;
      widget.title.icon = runsIcon;
      widget.id = content.id;
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
      return widget;
    };

    const fail = (what: string) => (error: unknown) => {
      Notification.error(`${what}: ${(error as Error).message ?? error}`, { autoClose: 8000 });
    };

    app.commands.addCommand(CommandIDs.openRuns, {
      label: 'Kandinsky: Show Runs',
      caption: 'Show the Kandinsky run log in the left sidebar',
      icon: runsIcon,
      execute: () => {
        app.shell.activateById(panel.id);
        return panel.refresh();
      }
    });

    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Kandinsky: Refresh Runs',
      execute: () => panel.refresh()
    });

    app.commands.addCommand(CommandIDs.insertCode, {
      label: 'Kandinsky: Insert Code Reproducing the Run',
      caption: 'Insert a code cell below the active one that sends the same request again',
      execute: async args => {
        const id = await runId(args);
        if (id === null) {
          return;
        }
        const run = await api.run(id).catch(fail(`Run ${id}`));
        if (!run) {
          return;
        }
        const current = notebooks?.currentWidget;
        if (!current) {
          return createNotebook([{ cell_type: 'code', metadata: {}, execution_count: null, outputs: [], source: run.code }]);
        }
        const notebook = current.content;
        NotebookActions.insertBelow(notebook);
        notebook.activeCell?.model.sharedModel.setSource(run.code);
        app.shell.activateById(current.id);
      }
    });

    app.commands.addCommand(CommandIDs.copyRequest, {
      label: 'Kandinsky: Copy Request JSON',
      execute: async args => {
        const id = await runId(args);
        if (id === null) {
          return;
        }
        const run = await api.run(id).catch(fail(`Run ${id}`));
        if (run) {
          Clipboard.copyToSystem(JSON.stringify(run.request, null, 2));
          Notification.info(`Copied the request of run ${id}`, { autoClose: 2000 });
        }
      }
    });

    app.commands.addCommand(CommandIDs.openImage, {
      label: 'Kandinsky: Open Image',
      execute: async args => {
        const id = await runId(args);
        if (id === null) {
          return;
        }
        const run = await api.run(id).catch(fail(`Run ${id}`));
        if (run && !run.has_image) {
          Notification.warning(`Run ${id} has no image (${run.status})`, { autoClose: 4000 });
        } else if (run) {
          addMain(new ImageView(api, run));
        }
      }
    });

    app.commands.addCommand(CommandIDs.compare, {
      label: 'Kandinsky: Compare Two Runs',
      caption: 'Select two runs in the sidebar (Ctrl-click the second) and compare them',
      execute: async args => {
        let ids = Array.isArray(args.ids) ? (args.ids as number[]) : [...panel.selection];
        const clicked = app.contextMenuHitTest(node => node.classList?.contains('knb-RunRow'));
        if (!Array.isArray(args.ids) && clicked?.dataset.runId) {
          const id = Number(clicked.dataset.runId);
          ids = ids.includes(id) ? ids : [...ids, id].slice(-2);
        }
        if (ids.length !== 2) {
          Notification.warning('Select two runs to compare: click one, then Ctrl-click (Cmd-click) another', {
            autoClose: 5000
          });
          return;
        }
        const runs = await Promise.all(ids.map(id => api.run(id))).catch(fail('Compare'));
        if (runs) {
          addMain(new CompareView(api, runs[0], runs[1]));
        }
      }
    });

    app.commands.addCommand(CommandIDs.openSweep, {
      label: 'Kandinsky: Open Sweep',
      execute: async args => {
        let name = typeof args.name === 'string' ? args.name : undefined;
        const row = app.contextMenuHitTest(node => node.classList?.contains('knb-RunRow'));
        name = name ?? row?.dataset.sweep;
        if (!name) {
          const sweeps = (await api.sweeps()).sweeps.map(s => s.name);
          if (!sweeps.length) {
            Notification.info('The run log has no sweeps yet', { autoClose: 3000 });
            return;
          }
          const answer = await InputDialog.getItem({ title: 'Open sweep', items: sweeps });
          name = answer.button.accept && answer.value ? answer.value : undefined;
        }
        if (name) {
          const view = new SweepView(api, name);
          sweepViews.add(view);
          view.disposed.connect(() => sweepViews.delete(view));
          addMain(view);
        }
      }
    });

    const createNotebook = async (cells: unknown[]) => {
      const contents = app.serviceManager.contents;
      const model = await contents.newUntitled({ type: 'notebook', path: '' });
      await contents.save(model.path, {
        type: 'notebook',
        format: 'json',
        content: {
          cells,
          metadata: {
            kernelspec: { name: 'python3', display_name: 'Python 3 (ipykernel)', language: 'python' }
          },
          nbformat: 4,
          nbformat_minor: 5
        }
      });
      return app.commands.execute('docmanager:open', { path: model.path, factory: 'Notebook' });
    };

    app.commands.addCommand(CommandIDs.newNotebook, {
      label: args => (args.isLauncher || args.isMenu ? 'Kandinsky Notebook' : 'Kandinsky: New Notebook'),
      caption: 'A new notebook ready to generate with kandinsky-nb',
      icon: runsIcon,
      execute: () => createNotebook(STARTER_CELLS).catch(fail('New notebook'))
    });

    const rowCommands = [
      CommandIDs.insertCode,
      CommandIDs.copyRequest,
      CommandIDs.openImage,
      CommandIDs.compare,
      CommandIDs.openSweep
    ];
    rowCommands.forEach((command, rank) => {
      app.contextMenu.addItem({ command, selector: '.knb-RunRow', rank });
    });
    if (palette) {
      for (const command of [CommandIDs.openRuns, CommandIDs.refresh, ...rowCommands, CommandIDs.newNotebook]) {
        palette.addItem({ command, category: 'Kandinsky' });
      }
    }
    launcher?.add({ command: CommandIDs.newNotebook, category: 'Notebook', rank: 10, args: { isLauncher: true } });
    mainMenu?.fileMenu.newMenu.addItem({ command: CommandIDs.newNotebook, args: { isMenu: true }, rank: 30 });
  }
};

export default plugin;
