// A small argv parser for the fluxserve command: flags (--name value, --name=value, -x value),
// repeatable flags, and positionals. No dependency; errors name the flag.

export interface FlagSpec {
  /** Long name without dashes. */
  name: string;
  short?: string;
  /** 'bool' takes no value. */
  kind: 'string' | 'bool';
  repeat?: boolean;
  help: string;
}

export interface Parsed {
  flags: Map<string, string[]>;
  bools: Set<string>;
  positionals: string[];
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[]): Parsed {
  const out: Parsed = { flags: new Map(), bools: new Set(), positionals: [] };
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
      spec = byName.get(name);
      if (!spec) throw new UsageError(`unknown option --${name}`);
    } else if (a.startsWith('-') && a.length === 2) {
      spec = byShort.get(a.slice(1));
      if (!spec) throw new UsageError(`unknown option ${a}`);
    } else {
      out.positionals.push(a);
      continue;
    }
    if (spec.kind === 'bool') {
      if (inline !== undefined) throw new UsageError(`--${spec.name} takes no value`);
      out.bools.add(spec.name);
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${spec.name} needs a value`);
    const list = out.flags.get(spec.name) ?? [];
    if (list.length > 0 && !spec.repeat) throw new UsageError(`--${spec.name} given twice`);
    list.push(value);
    out.flags.set(spec.name, list);
  }
  return out;
}

export function flag(p: Parsed, name: string): string | undefined {
  return p.flags.get(name)?.[0];
}

export function helpText(usage: string, specs: readonly FlagSpec[]): string {
  const lines = specs.map((s) => {
    const names = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.kind === 'string' ? ' VALUE' : ''}`;
    return `  ${names.padEnd(28)} ${s.help}`;
  });
  return `${usage}\n\n${lines.join('\n')}\n`;
}
