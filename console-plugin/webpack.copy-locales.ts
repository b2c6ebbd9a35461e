// Emits locales/<lang>/<ns>.json into the bundle (the console loads them from the plugin's base
// path); a tiny stand-in for copy-webpack-plugin.
import * as fs from 'fs';
import * as path from 'path';
import type { Compiler } from 'webpack';

export default class CopyLocales {
  constructor(private readonly dir: string) {}

  apply(compiler: Compiler) {
    const { RawSource } = compiler.webpack.sources;
    compiler.hooks.thisCompilation.tap('CopyLocales', (compilation) => {
      compilation.hooks.processAssets.tap(
        {
          name: 'CopyLocales',
          stage: compiler.webpack.Compilation.PROCESS_ASSETS_STAGE_ADDITIONAL,
        },
        () => {
          for (const lang of fs.readdirSync(this.dir)) {
            for (const file of fs.readdirSync(path.join(this.dir, lang))) {
              const full = path.join(this.dir, lang, file);
              compilation.fileDependencies.add(full);
              compilation.emitAsset(
                `locales/${lang}/${file}`,
                new RawSource(fs.readFileSync(full)),
              );
            }
          }
        },
      );
    });
  }
}
