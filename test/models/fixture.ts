// The BFL reference fixture (an oracle computed by the public black-forest-labs/flux code; see its
// README). It lives in test/fixtures/bfl-tiny-a so that a bare clone runs
// the whole suite; this file compiles to dist/test/models/, three levels below the repository root.
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BFL_TINY_A = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a', import.meta.url));

if (!fs.existsSync(`${BFL_TINY_A}/cases.safetensors`)) {
  throw new Error(`the BFL fixture is missing at ${BFL_TINY_A} (it is in the repository: git checkout test/fixtures)`);
}
