import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';

const ROOT = join(__dirname, '..', '..');

function sources(): string {
  const dir = join(ROOT, 'src');
  return readdirSync(dir)
    .filter(name => name.endsWith('.ts'))
    .map(name => readFileSync(join(dir, name), 'utf-8'))
    .join('\n');
}

describe('package.json', () => {
  it('lists as dependencies only packages the extension imports', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf-8'));
    const code = sources();
    const unused = Object.keys(manifest.dependencies).filter(
      name => !code.includes(`from '${name}'`) && !code.includes(`from '${name}/`)
    );
    expect(unused).toEqual([]);
  });
});
