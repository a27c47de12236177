// Fails the build when package.json's version differs from the Python package's (odsc_magics/_version.py).
const fs = require('fs');
const path = require('path');

const pkg = require('../package.json');
const source = fs.readFileSync(
  path.join(__dirname, '..', '..', 'odsc_magics', '_version.py'),
  'utf8'
);
const match = source.match(/__version__\s*=\s*["']([^"']+)["']/);
if (!match) {
  console.error('check-version: no __version__ in odsc_magics/_version.py');
  process.exit(1);
}
// PEP 440 and npm spell pre-releases differently (0.2.0a1 / 0.2.0-alpha.1): compare the release part strictly.
const python = match[1];
const npm = pkg.version;
const normalize = v => v.replace(/[-.]?(a|alpha)\.?/, 'a').replace(/[-.]?(b|beta)\.?/, 'b').replace(/[-.]?rc\.?/, 'rc');
if (normalize(python) !== normalize(npm)) {
  console.error(
    `check-version: labextension/package.json has ${npm} but odsc_magics/_version.py has ${python}; make them equal.`
  );
  process.exit(1);
}
console.log(`check-version: ${npm} OK`);
