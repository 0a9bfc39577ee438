import { createApp } from 'vue';
import ElementPlus from 'element-plus';
import 'element-plus/dist/index.css';
import zhCn from 'element-plus/es/locale/lang/zh-cn';
import en from 'element-plus/es/locale/lang/en';
import App from './App.vue';
import { lang } from './i18n.js';
import './style.css';

document.documentElement.lang = lang;
createApp(App).use(ElementPlus, { locale: lang === 'en' ? en : zhCn }).mount('#app');
