export const notAGraph = 1;
