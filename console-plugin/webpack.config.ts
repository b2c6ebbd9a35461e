// The plugin bundle: ConsoleRemotePlugin turns package.json#consolePlugin and
// console-extensions.json into plugin-manifest.json + plugin-entry.js + exposed chunks, and fails
// the build on an invalid extension or $codeRef.
import * as path from 'path';
import CopyLocales from './webpack.copy-locales';
import { ConsoleRemotePlugin } from '@openshift-console/dynamic-plugin-sdk-webpack';
import type { Configuration } from 'webpack';
import { cssRule, esmRule, sourceRule } from './webpack.rules';

const production = process.env.NODE_ENV === 'production';

const config: Configuration = {
  mode: production ? 'production' : 'development',
  // No entry of our own: the remote container entry comes from ConsoleRemotePlugin.
  entry: {},
  context: path.resolve(__dirname, 'src'),
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: production ? '[name]-bundle-[contenthash].min.js' : '[name]-bundle.js',
    chunkFilename: production ? '[name]-chunk-[chunkhash].min.js' : '[name]-chunk.js',
  },
  resolve: { extensions: ['.ts', '.tsx', '.js', '.jsx'] },
  module: {
    rules: [
      sourceRule,
      cssRule,
      {
        test: /\.(png|jpg|jpeg|gif|svg|woff2?|ttf|eot|otf)(\?.*$|$)/,
        type: 'asset/resource',
        generator: { filename: 'assets/[name][ext]' },
      },
      esmRule,
    ],
  },
  plugins: [new ConsoleRemotePlugin(), new CopyLocales(path.resolve(__dirname, 'locales'))],
  devtool: production ? false : 'source-map',
  optimization: { chunkIds: production ? 'deterministic' : 'named', minimize: production },
  performance: { hints: false },
  stats: 'errors-warnings',
};

export default config;
