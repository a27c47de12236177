import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="3" width="18" height="5" rx="1"/>
    <rect x="3" y="10" width="18" height="5" rx="1"/>
    <rect x="3" y="17" width="18" height="4" rx="1"/>
    <circle cx="6.5" cy="5.5" r="1" fill="#fff"/>
    <circle cx="6.5" cy="12.5" r="1" fill="#fff"/>
    <circle cx="6.5" cy="19" r="1" fill="#fff"/>
  </g>
</svg>`;

/**
 * The sidebar icon of the LLM Deployments panel.
 */
export const deploymentsIcon = new LabIcon({ name: 'odsc-magics:deployments', svgstr: svg });
