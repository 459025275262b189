/** The template of the coordinator's stack (serverless.coordinator.yml): coordinator and dashboard, from their operator's config file. */
'use strict';
const { coordinatorUnit } = require('./parts.cjs');
const { coordinatorSettings, stageOf } = require('./settings.cjs');

const render = (stage, file, localFile) => coordinatorUnit(coordinatorSettings(stage, file, localFile));

module.exports = {
  functions: ({ options }) => render(stageOf(options)).functions,
  resources: ({ options }) => ({ Resources: render(stageOf(options)).resources }),
  render,
};
