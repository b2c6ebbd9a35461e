// The browser-test harness: the plugin's components + harness/sdk.tsx (in place of the console's
// SDK, with Monaco for its editors) + PatternFly's CSS, as a static page for `kubectl proxy --www=harness/dist --www-prefix=/ui/`.
import * as path from 'path';
import HtmlWebpackPlugin from 'html-webpack-plugin';
import MonacoWebpackPlugin from 'monaco-editor-webpack-plugin';
import type { Configuration } from 'webpack';
import { cssRule, esmRule, sourceRule } from '../webpack.rules';

const root = path.resolve(__dirname, '..');

const config: Configuration = {
  mode: 'development',
  context: root,
  entry: { harness: './harness/index.tsx' },
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: '[name].js',
    publicPath: './',
    clean: true,
  },
  resolve: {
    extensions: ['.ts', '.tsx', '.js', '.jsx'],
    alias: { '@openshift-console/dynamic-plugin-sdk$': path.resolve(__dirname, 'sdk.tsx') },
  },
  module: {
    rules: [
      sourceRule,
      cssRule,
      { test: /\.(png|jpg|jpeg|gif|svg|woff2?|ttf|eot|otf)(\?.*$|$)/, type: 'asset/resource' },
      esmRule,
    ],
  },
  plugins: [
    // As the console's webpack config: Monaco's yaml, dockerfile and json grammars (plaintext is
    // built in) and its workers.
    new MonacoWebpackPlugin({ languages: ['yaml', 'dockerfile', 'json'], globalAPI: true }),
    new HtmlWebpackPlugin({
      title: 'Strata console plugin harness',
      templateContent:
        '<!doctype html><html><head><meta charset="utf-8"><title>Strata console plugin harness</title></head><body><div id="root"></div></body></html>',
    }),
  ],
  devtool: false,
  performance: { hints: false },
  stats: 'errors-warnings',
};

export default config;
