#!/usr/bin/env node
// The installed command runs the built JavaScript (Node does not strip types under node_modules).
import { runCli } from '../dist/cli/main.js';

runCli();
