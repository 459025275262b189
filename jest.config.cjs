/** Jest runs TypeScript through ts-jest as CommonJS; the ESM-only packages (middy, noble) are transformed too. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.(t|j)sx?$': ['ts-jest', { tsconfig: { isolatedModules: true, module: 'commonjs', moduleResolution: 'node', allowJs: true, esModuleInterop: true } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!(@middy|@noble)/)'],
  moduleNameMapper: {
    '^@middy/(core|util)$': '<rootDir>/node_modules/@middy/$1/index.js',
    // Sources import siblings as ESM ('./x.js'); under ts-jest they are the .ts files.
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  reporters: ['default', '<rootDir>/test/support/summary-reporter.cjs'],
  testTimeout: 120000,
  verbose: true,
};
