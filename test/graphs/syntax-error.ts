export default defineGraph({ name: 'x', presets: { a: {} }, build() { return { y: ; } } });
