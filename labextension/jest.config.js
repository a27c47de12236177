// jest over the TypeScript sources, with JupyterLab's shared test configuration.
const jestJupyterLab = require('@jupyterlab/testutils/lib/jest-config');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  reporters: ['default'],
  collectCoverageFrom: ['src/**/*.ts', '!src/**/*.d.ts'],
  testRegex: 'src/__tests__/.*\\.spec\\.ts$'
};
