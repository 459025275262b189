/** The template of one node's own stack (serverless.node.yml), from its operator's config file. */
'use strict';
const { nodeUnit } = require('./parts.cjs');
const { nodeSettings, stageOf } = require('./settings.cjs');

const render = (stage, file, localFile) => nodeUnit(nodeSettings(stage, file, localFile));

module.exports = {
  service: () => `fedkms-${nodeSettings('dev').id}`,
  functions: ({ options }) => render(stageOf(options)).functions,
  resources: ({ options }) => ({ Resources: render(stageOf(options)).resources }),
  render,
};
