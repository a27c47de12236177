import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Clipboard, ICommandPalette, InputDialog, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { IDeployment, RestApi } from './api';
import { cellsToInsert, deploySource, insertCellsBelow, notebookSources, predictSource } from './cells';
import { PromptCellHighlighter } from './highlight';
import { deploymentsIcon } from './icon';
import { DeploymentsModel } from './model';
import { DeploymentsPanel } from './panel';

/**
 * The command ids of the extension.
 */
export namespace CommandIDs {
  export const openPanel = 'odsc-magics:open-deployments';
  export const refresh = 'odsc-magics:refresh-deployments';
  export const insertPredict = 'odsc-magics:insert-predict-cell';
  export const insertDeploy = 'odsc-magics:insert-deploy-cell';
}

const PLUGIN_ID = 'odsc-magics:plugin';

/**
 * The LLM Deployments sidebar, its commands, and Markdown editing of prompt cells.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'LLM Deployments sidebar and commands for odsc-magics (OCI Data Science model deployments).',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null
  ) => {
    const trans = (translator ?? nullTranslator).load('odsc_magics');
    const model = new DeploymentsModel({ api: new RestApi() });
    const category = trans.__('LLM Deployments');

    const insert = (source: string): boolean => {
      const panel = tracker.currentWidget;
      if (!panel) {
        Notification.warning(trans.__('Open a notebook first: the cell goes below its active cell.'), {
          autoClose: 5000
        });
        return false;
      }
      insertCellsBelow(panel, cellsToInsert(notebookSources(panel), source));
      app.shell.activateById(panel.id);
      return true;
    };

    const panel = new DeploymentsPanel({
      model,
      translator: trans,
      actions: {
        insertPredictCell: (deployment: IDeployment) => {
          insert(predictSource(deployment));
        },
        insertDeployCell: () => {
          insert(deploySource());
        },
        copy: (text: string) => Clipboard.copyToSystem(text),
        notify: (message: string, type: 'success' | 'error' | 'info') => {
          Notification.emit(message, type, { autoClose: type === 'error' ? false : 3000 });
        }
      }
    });
    panel.title.icon = deploymentsIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'odsc-magics-deployments');

    app.commands.addCommand(CommandIDs.openPanel, {
      label: trans.__('Open LLM Deployments'),
      caption: trans.__('Show the LLM Deployments panel in the left sidebar'),
      icon: deploymentsIcon,
      execute: () => {
        app.shell.activateById(panel.id);
        return model.refresh();
      }
    });

    app.commands.addCommand(CommandIDs.refresh, {
      label: trans.__('Refresh LLM Deployments'),
      execute: () => model.refresh()
    });

    app.commands.addCommand(CommandIDs.insertPredict, {
      label: trans.__('Insert LLM Predict Cell'),
      caption: trans.__('Insert a %%llm_predict cell below the active cell'),
      isEnabled: () => tracker.currentWidget !== null,
      execute: async args => {
        let name = args['name'] as string | undefined;
        let chat = Boolean(args['chat']);
        if (!name) {
          if (model.status === 'loading') {
            await model.refresh();
          }
          const active = model.deployments.filter(d => d.state === 'ACTIVE');
          if (active.length === 1) {
            name = active[0].name;
            chat = active[0].chat;
          } else if (active.length > 1) {
            const choice = await InputDialog.getItem({
              title: trans.__('Deployment to prompt'),
              items: active.map(d => d.name)
            });
            if (!choice.button.accept || !choice.value) {
              return;
            }
            name = choice.value;
            chat = active.find(d => d.name === name)?.chat ?? false;
          }
        }
        insert(predictSource(name ? { name, chat } : undefined));
      }
    });

    app.commands.addCommand(CommandIDs.insertDeploy, {
      label: trans.__('Insert LLM Deploy Cell'),
      caption: trans.__('Insert a %llm_deploy cell below the active cell'),
      isEnabled: () => tracker.currentWidget !== null,
      execute: () => {
        insert(deploySource());
      }
    });

    if (palette) {
      for (const command of [
        CommandIDs.openPanel,
        CommandIDs.refresh,
        CommandIDs.insertPredict,
        CommandIDs.insertDeploy
      ]) {
        palette.addItem({ command, category });
      }
    }

    let highlighter: PromptCellHighlighter | null = null;
    const applySettings = (settings: ISettingRegistry.ISettings | null) => {
      const markdown = settings ? (settings.get('markdownPromptCells').composite as boolean) : true;
      if (settings) {
        model.pollInterval = settings.get('pollInterval').composite as number;
      }
      if (markdown && !highlighter) {
        highlighter = new PromptCellHighlighter(tracker);
      } else if (!markdown && highlighter) {
        highlighter.dispose();
        highlighter = null;
      }
    };
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          applySettings(settings);
          settings.changed.connect(applySettings);
        })
        .catch(() => applySettings(null));
    } else {
      applySettings(null);
    }
  }
};

export default plugin;
