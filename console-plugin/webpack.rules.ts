// Loader rules shared by the plugin's build (webpack.config.ts) and the browser-test harness
// (harness/webpack.config.ts), so both compile the components the same way.
import type { RuleSetRule } from 'webpack';

export const sourceRule: RuleSetRule = {
  test: /\.(jsx?|tsx?)$/,
  exclude: /node_modules/,
  use: {
    loader: 'swc-loader',
    options: {
      jsc: {
        parser: { syntax: 'typescript', tsx: true },
        transform: { react: { runtime: 'automatic' } },
        target: 'es2021',
      },
    },
  },
};

export const cssRule: RuleSetRule = { test: /\.css$/, use: ['style-loader', 'css-loader'] };

/** Some ESM packages import without file extensions. */
export const esmRule: RuleSetRule = { test: /\.m?js/, resolve: { fullySpecified: false } };
