import { EventEmitter } from 'events';

/** Keys of console-extensions.json: string values of the form `%<namespace>~<key>%`. */
export class ConsoleExtensionsLexer extends EventEmitter {
  extract(content) {
    const keys = [];
    JSON.parse(content, (_k, value) => {
      const m = typeof value === 'string' ? /^%(.+)%$/.exec(value) : null;
      if (m) keys.push({ key: m[1] });
      return value;
    });
    return keys;
  }
}
